"""Mirrors: folders of published students that the zoo finds by name through their ``index.json``.

``zoo publish run=... to=DIR`` writes and updates the layout:

    DIR/index.json                   {"format": 1, "models": {name: {card, weights, version, sha256, size, ...}}}
    DIR/<card>.yaml                  the model card (sha256 and size of its weights, metrics citing the record)
    DIR/<card>/<card>.safetensors    the student; DIR/<card>/record.json the run record behind the metrics

A mirror is named by where that folder is: an http(s):// or file:// URL (of DIR, or of DIR/index.json) or a local
folder. It is configured once, in ``ZOO_MIRRORS`` (space- or comma-separated) or in ``mirrors:`` of
``$ZOO_HOME/config.yaml`` (what ``zoo mirror add=...`` writes); the environment's come first. Paths inside the index
are relative to the mirror, so one folder can be served from anywhere; the card's own URLs stay as fallbacks.

Every index and card read is kept under ``$ZOO_HOME/mirrors/<key>/``: a mirror that cannot be reached (or
ZOO_OFFLINE=1) still lists and resolves what was last read from it, with a warning, and the weights are checked
against the index's sha256 all the same.
"""

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse
from urllib.request import url2pathname

import yaml

from zoo.atomic import atomic_write_text
from zoo.cards import ModelCard, WeightsSpec, parse_card
from zoo.errors import ConfigError, ZooError
from zoo.paths import zoo_home

INDEX = "index.json"
FORMAT = 1
ENV = "ZOO_MIRRORS"
CONFIG_KEYS = ("mirrors",)
ENTRY_KEYS = ("card", "weights", "version", "sha256", "size")
TIMEOUT_S = (5, 30)  # an index is small: a mirror that does not answer quickly is reported, not waited for


class MirrorError(ZooError):
    """A mirror that cannot be read, or whose index and cards disagree."""


@dataclass(frozen=True)
class Mirror:
    location: str  # as the user wrote it
    base: str      # the folder's URL, ending in "/"

    def url(self, relative: str) -> str:
        return urljoin(self.base, relative)

    @property
    def cache(self) -> Path:
        return zoo_home() / "mirrors" / hashlib.sha256(self.base.encode()).hexdigest()[:16]


def mirror(location: str) -> Mirror:
    """A mirror from a URL or a folder path (``~`` expanded, made absolute)."""
    location = str(location).strip()
    if location.startswith(("http://", "https://", "file://")):
        base = location
    elif "://" in location:
        raise ConfigError(f"mirror '{location}': use an http://, https:// or file:// URL, or a folder path")
    else:
        base = Path(location).expanduser().resolve().as_uri()
    base = base.removesuffix(INDEX)
    return Mirror(location, base if base.endswith("/") else base + "/")


# --- configuration --------------------------------------------------------------------------------------------


def config_path() -> Path:
    return zoo_home() / "config.yaml"


def read_config() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: unreadable ({str(err).splitlines()[0]})", "fix or delete it") from err
    unknown = sorted(set(raw) - set(CONFIG_KEYS)) if isinstance(raw, dict) else ["(not a mapping)"]
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}'", f"valid keys: {', '.join(CONFIG_KEYS)}")
    if not isinstance(raw.get("mirrors", []), list):
        raise ConfigError(f"{path}: 'mirrors' must be a list of URLs or folders")
    return raw


def configured() -> list[Mirror]:
    """The mirrors to read, in order: ``ZOO_MIRRORS``, then the config file's; each once."""
    locations = os.environ.get(ENV, "").replace(",", " ").split() + [str(m) for m in read_config().get("mirrors", [])]
    found: dict[str, Mirror] = {}
    for location in locations:
        one = mirror(location)
        found.setdefault(one.base, one)
    return list(found.values())


def add(location: str) -> Mirror:
    """Check that ``location`` serves an index, then keep it in the config file."""
    one = mirror(location)
    try:
        read_index(one)  # a typo is an error now, not a silent gap in every later listing
    except MirrorError as err:
        raise MirrorError(f"not added: {err}", err.hint or "check the address, or publish to the folder first "
                          "(zoo publish run=RUN_DIR to=DIR)") from err
    config = read_config()
    kept = [str(m) for m in config.get("mirrors", [])]
    if one.base not in {mirror(m).base for m in kept}:
        _write_config({**config, "mirrors": kept + [one.location]})
    return one


def remove(location: str) -> None:
    config, base = read_config(), mirror(location).base
    kept = [str(m) for m in config.get("mirrors", [])]
    left = [m for m in kept if mirror(m).base != base]
    if len(left) == len(kept):
        hint = f"configured: {', '.join(kept)}" if kept else "none is configured in the config file"
        raise ConfigError(f"mirror '{location}' is not in {config_path()}", hint)
    _write_config({**config, "mirrors": left})


def _write_config(config: dict[str, Any]) -> None:
    atomic_write_text(config_path(), yaml.safe_dump(config, sort_keys=False))


# --- reading a mirror -----------------------------------------------------------------------------------------


def read_index(one: Mirror) -> dict[str, dict[str, Any]]:
    """The mirror's models (name -> index entry): fetched, or the last copy read when it cannot be."""
    from zoo.hub import is_offline

    cached = one.cache / INDEX
    if is_offline():
        if not cached.is_file():
            raise MirrorError(f"mirror {one.base}: offline, and its index was never read",
                              "read it once online (zoo list models)")
        return _parse_index(cached.read_bytes(), one)
    try:
        data = _get(one.url(INDEX))
        models = _parse_index(data, one)
    except MirrorError as err:
        if not cached.is_file():
            raise
        _warn(f"{err}; using its index as read on {time.ctime(cached.stat().st_mtime)}")
        return _parse_index(cached.read_bytes(), one)
    atomic_write_text(cached, data.decode("utf-8"))
    return models


def load_card(one: Mirror, name: str, entry: dict[str, Any]) -> ModelCard:
    """The card ``name`` as the mirror publishes it, checked against its index entry; its weights URL is the
    mirror's own first, then the card's."""
    from zoo.hub import is_offline

    cached = one.cache / "cards" / f"{name}.yaml"
    text = None
    if not is_offline():
        try:
            text = _get(one.url(entry["card"])).decode("utf-8")
        except MirrorError as err:
            if not cached.is_file():
                raise
            _warn(f"{err}; using the card as read before")
    if text is None:
        if not cached.is_file():
            raise MirrorError(f"mirror {one.base}: offline, and the card of '{name}' was never read",
                              f"run `zoo download {name}` once online")
        text = cached.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise MirrorError(f"mirror {one.base}: the card of '{name}' is not YAML ({str(err).splitlines()[0]})") from err
    card = parse_card(raw, one.url(entry["card"]))
    if card.name != name or card.weights.sha256 != entry["sha256"] or card.weights.size != entry["size"]:
        raise MirrorError(f"mirror {one.base}: the card of '{name}' disagrees with its index (name, sha256 or size)",
                          "a publish may be under way: try again; if it persists, publish the run again")
    atomic_write_text(cached, text)
    own = one.url(entry["weights"])
    card.weights = WeightsSpec(urls=[own, *(u for u in card.weights.urls if u != own)], sha256=card.weights.sha256,
                               size=card.weights.size, format=card.weights.format)
    return card


def _parse_index(data: bytes, one: Mirror) -> dict[str, dict[str, Any]]:
    try:
        raw = json.loads(data)
        models = raw["models"]
        ok = raw.get("format") == FORMAT and all(all(k in e for k in ENTRY_KEYS) for e in models.values())
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise MirrorError(f"mirror {one.base}: {INDEX} is not a zoo mirror index (format {FORMAT})",
                          "check the URL: it must be the folder `zoo publish ... to=DIR` wrote")
    return models


def _get(url: str) -> bytes:
    """The bytes at an http(s):// or file:// URL, or a MirrorError saying why not."""
    if url.startswith("file://"):
        path = Path(url2pathname(urlparse(url).path))
        try:
            return path.read_bytes()
        except OSError as err:
            raise MirrorError(f"cannot read {path}: {err.strerror or err}") from err
    import requests

    from zoo import __version__

    try:
        response = requests.get(url, timeout=TIMEOUT_S, headers={"User-Agent": f"distill-zoo/{__version__}"})
    except requests.RequestException as err:
        raise MirrorError(f"cannot reach {url}: {str(err).splitlines()[0][:200]}") from err
    if response.status_code != 200:
        raise MirrorError(f"{url}: HTTP {response.status_code} {response.reason}")
    return response.content


# --- writing a mirror (zoo publish) ---------------------------------------------------------------------------


def update_index(folder: Path, card: ModelCard, weights: str, version: str) -> dict[str, Any] | None:
    """Enter ``card`` (published under ``folder``, weights at the relative path ``weights``) in the folder's index;
    returns the entry it replaced, if any. Written last by ``zoo publish``, so the index never names a card or
    weights that are not there yet."""
    from filelock import FileLock

    path = folder / INDEX
    locks = zoo_home() / "mirrors" / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{hashlib.sha256(str(path).encode()).hexdigest()[:16]}.lock")):
        models = _parse_index(path.read_bytes(), mirror(str(folder))) if path.is_file() else {}
        previous = models.get(card.name)
        models[card.name] = {"card": f"{card.name}.yaml", "weights": weights, "version": version,
                             "sha256": card.weights.sha256, "size": card.weights.size, "arch": card.arch,
                             "task": card.task, "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        index = {"format": FORMAT, "models": dict(sorted(models.items()))}
        atomic_write_text(path, json.dumps(index, indent=2) + "\n")
    return previous


def _warn(message: str) -> None:
    logging.getLogger(__name__).warning(message)
