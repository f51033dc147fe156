"""``hf-hub:org/repo[@revision]``: a student read from a Hugging Face Hub repository, timm's way, through
``huggingface_hub``: its cache (``HF_HOME``), its revision pinning (a branch, tag or commit after ``@``) and its
offline mode (``HF_HUB_OFFLINE=1``, or the zoo's ``ZOO_OFFLINE=1``: only what is cached is used).

The repository's layout, as ``zoo publish run=... to=hf-hub:org/repo`` uploads it:

    card.yaml            the zoo's model card; weights.urls [hf://org/repo/model.safetensors], sha256, size
    model.safetensors    the student alone
    record.json          the run record behind the card's metrics
    README.md            the Hub's own model card: what the student is and how to load it

The card is read first, and its hf:// URLs into the same repository are pinned to the commit it came from (the
cache keeps it in ``snapshots/<commit>/``), so a push between the two reads can never pair one commit's card with
another's weights. The weights stay in the Hugging Face cache (no second copy) and are checked against the card's
sha256 and size on every use; a cached copy that fails is downloaded once more, then refused.

timm's own parser (``timm.models._hub.hf_split``) is not used: it is private, and importing timm pulls in torch,
which ``zoo list`` and ``zoo download`` do without.
"""

import logging
import re
from pathlib import Path

from zoo import cards
from zoo.errors import ConfigError, UnknownNameError, ZooError
from zoo.hub import DownloadError, is_offline, parse_hf_url

PREFIX = "hf-hub:"
CARD_FILE = "card.yaml"
WEIGHTS_FILE = "model.safetensors"
RECORD_FILE = "record.json"
README_FILE = "README.md"


class HubError(ZooError):
    """The Hub refused an upload (no login, no rights) or answered with an error."""


def is_hub_name(name: str) -> bool:
    return str(name).startswith(PREFIX)


def parse(name: str) -> tuple[str, str | None]:
    """``hf-hub:org/repo[@revision]`` -> (repo_id, revision or None)."""
    repo, at, revision = name.removeprefix(PREFIX).partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or (at and not revision):
        raise ConfigError(f"'{name}' is not a Hub name", "write hf-hub:org/repo or hf-hub:org/repo@<branch|tag|commit>")
    return repo, revision or None


def load_card(name: str) -> cards.ModelCard:
    """The card of ``hf-hub:org/repo[@revision]``, its weights pinned to the commit the card came from."""
    from huggingface_hub import hf_hub_download

    repo_id, revision = parse(name)
    path = Path(_call(name, hf_hub_download, repo_id, CARD_FILE, revision=revision))
    commit = path.parent.name  # <cache>/models--org--repo/snapshots/<commit>/card.yaml
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise DownloadError(f"{name}: the Hugging Face cache holds card.yaml outside a snapshots/<commit>/ folder")
    card = cards.load_card(path, check_name=False)
    if not card.weights.sha256 or card.weights.size is None:
        raise DownloadError(f"{name}: card.yaml gives no sha256 or size for its weights, so they cannot be checked",
                            "publish the run again with `zoo publish run=... to=hf-hub:org/repo`")
    card.weights.urls = [_pin(url, repo_id, commit) for url in card.weights.urls]
    if not any(url.startswith(f"hf://{repo_id}/") for url in card.weights.urls):
        raise DownloadError(f"{name}: card.yaml names no weights in {repo_id} (weights.urls: hf://{repo_id}/...)")
    return card


def _pin(url: str, repo_id: str, commit: str) -> str:
    if not url.startswith(f"hf://{repo_id}/"):
        return url
    _, path, revision = parse_hf_url(url)
    return url if revision else f"hf://{repo_id}/{path}@{commit}"


def download(card: cards.ModelCard) -> Path:
    """The card's weights in the Hugging Face cache, checked against its sha256 and size."""
    from huggingface_hub import hf_hub_download

    url = next(u for u in card.weights.urls if u.startswith("hf://"))
    repo_id, filename, revision = parse_hf_url(url)
    problem = None
    for force in (False, True):
        path = Path(_call(url, hf_hub_download, repo_id, filename, revision=revision, force_download=force))
        problem = _problem(card, path)
        if problem is None:
            return path
        if is_offline():
            break
        logging.getLogger(__name__).warning(f"{url} in the Hugging Face cache: {problem}; downloading it again")
    raise DownloadError(f"the weights of '{card.name}' at {url} fail their check: {problem}",
                        "the Hub serves another file than card.yaml describes: publish the run again")


def _problem(card: cards.ModelCard, path: Path) -> str | None:
    from zoo.weights import sha256_file

    size, digest = path.stat().st_size, sha256_file(path)
    if size != card.weights.size:
        return f"size {size} bytes, the card says {card.weights.size}"
    return None if digest == card.weights.sha256 else f"sha256 {digest}, the card says {card.weights.sha256}"


def _call(what: str, fn, *args, **kwargs):
    """``hf_hub_download`` (offline when the zoo is), its errors as one-line zoo errors."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return fn(*args, local_files_only=is_offline(), **kwargs)
    except LocalEntryNotFoundError as err:
        if is_offline():
            raise DownloadError(f"offline, and {what} is not in the Hugging Face cache",
                                "unset HF_HUB_OFFLINE and ZOO_OFFLINE and read it once online") from err
        raise DownloadError(f"{what}: the Hub cannot be reached and nothing is cached ({_first_line(err)})",
                            "check the network (HF_ENDPOINT if you use a mirror of the Hub)") from err
    except RepositoryNotFoundError as err:
        raise UnknownNameError(f"{what}: no such Hub repository (or it is private)",
                               "check the name; a private repository needs `hf auth login` or HF_TOKEN") from err
    except RevisionNotFoundError as err:
        raise UnknownNameError(f"{what}: the repository has no such revision", "name a branch, tag or commit") from err
    except EntryNotFoundError as err:
        raise UnknownNameError(f"{what}: not in the repository, which is not laid out as a zoo student",
                               "zoo publish run=... to=hf-hub:org/repo writes card.yaml and model.safetensors") from err
    except OSError as err:  # HfHubHTTPError and plain connection trouble
        raise DownloadError(f"{what}: {type(err).__name__}: {_first_line(err)}") from err


def upload(name: str, folder: Path, message: str) -> str:
    """Upload ``folder`` as one commit to ``hf-hub:org/repo`` (created if need be); returns the commit id."""
    from huggingface_hub import HfApi

    repo_id, revision = parse(name)
    if revision:
        raise ConfigError(f"publish to {PREFIX}{repo_id}, without @{revision}",
                          "every publish is a new commit on the main branch; zoo publish prints it to pin")
    api = HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message).oid
    except (OSError, ValueError) as err:  # HfHubHTTPError, no token (LocalTokenNotFoundError), a bad repo id
        raise HubError(f"upload to {PREFIX}{repo_id} failed: {type(err).__name__}: {_first_line(err)}",
                       "log in with `hf auth login` (or set HF_TOKEN) with write access to the repository") from err


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
