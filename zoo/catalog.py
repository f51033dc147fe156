"""Every model card the zoo can reach, by name, and where each one comes from.

    get_card("mlp.tiny.kd_digits")        the card, from whichever source holds it
    download("hf-hub:org/repo@v1")        (card, weights path), verified, wherever the weights live
    catalog().entries                     every listable card with its source (``zoo list models``)

Sources, in this order: ``built-in`` (the models/ folder shipped with the zoo), ``user`` (``$ZOO_HOME/models/``:
cards of one's own, without editing the installed package) and each configured mirror (``zoo.mirrors``). A name
found in several sources is one student if they all give the same weights (replicas of a mirror), else an error
that names two of them: the zoo never guesses which of two students a name means. ``hf-hub:org/repo[@revision]``
names are read from the Hugging Face Hub (``zoo.hfhub``); the Hub cannot be listed, so such names appear nowhere
until asked for.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from zoo import hfhub, mirrors
from zoo.cards import ModelCard, load_card
from zoo.errors import ConfigError, UnknownNameError, did_you_mean
from zoo.paths import data_dir, user_models_dir, zoo_home


class CardClashError(ConfigError):
    """One name in two sources."""


@dataclass(frozen=True)
class Entry:
    name: str
    source: str                       # built-in | user | mirror <url>
    detail: str                       # the card's file, or the mirror's version of it
    load: Callable[[], ModelCard]
    sha256: str | None = None         # a mirror's, from its index (a folder card's is read when needed)
    weights_url: str | None = None    # a mirror's own address of the weights

    def digest(self) -> str | None:
        return self.sha256 or self.load().weights.sha256


@dataclass
class Catalog:
    entries: dict[str, Entry]         # sorted by name
    unreachable: list[str]            # mirrors that could not be read, and why


def catalog() -> Catalog:
    """Every source read once. One name in several sources is one student when they all give the same weights
    (sha256): replicas of a mirror, or a published card also copied into $ZOO_HOME/models/; the first source
    serves it, the others' mirror addresses are its fallbacks. Anything else is a CardClashError."""
    found: dict[str, list[Entry]] = {}
    unreachable = []
    for entry in _folder(data_dir("models"), "built-in") + _folder(user_models_dir(), "user"):
        found.setdefault(entry.name, []).append(entry)
    for one in mirrors.configured():
        try:
            index = mirrors.read_index(one)
        except mirrors.MirrorError as err:
            unreachable.append(str(err))
            continue
        for name, item in index.items():
            found.setdefault(name, []).append(Entry(name, f"mirror {one.base}", f"version {item['version']}",
                                                    partial(mirrors.load_card, one, name, item), item["sha256"],
                                                    one.url(item["weights"])))
    return Catalog({name: _one(entries) for name, entries in sorted(found.items())}, unreachable)


def _one(entries: list[Entry]) -> Entry:
    first, *others = entries
    if not others:
        return first
    digest = first.digest()
    second = next((e for e in others if digest is None or e.digest() != digest), None)
    if second is not None:
        raise CardClashError(f"model '{first.name}' is in two sources with different weights: {first.source} "
                             f"({first.detail}) and {second.source} ({second.detail})",
                             "keep one: delete the user card, `zoo mirror remove=URL`, or publish under another "
                             "name (zoo publish ... name=<arch>.<tag>)")
    also = [e.weights_url for e in others if e.weights_url]
    return Entry(first.name, first.source, f"{first.detail}; also in {', '.join(e.source for e in others)}",
                 partial(_with_fallbacks, first.load, also), first.sha256, first.weights_url)


def _with_fallbacks(load: Callable[[], ModelCard], urls: list[str]) -> ModelCard:
    card = load()
    card.weights.urls += [url for url in urls if url not in card.weights.urls]
    return card


def _folder(folder: Path, source: str) -> list[Entry]:
    return [Entry(path.stem, source, str(path), partial(load_card, path)) for path in sorted(folder.glob("*.yaml"))]


def card_names() -> list[str]:
    return list(catalog().entries)


def find(name: str) -> ModelCard | None:
    """The card called ``name``, or None when no source has one (``name`` may then be an arch)."""
    if hfhub.is_hub_name(name):
        return hfhub.load_card(name)
    entry = catalog().entries.get(name)
    return entry.load() if entry else None


def get_card(name: str) -> ModelCard:
    if hfhub.is_hub_name(name):
        return hfhub.load_card(name)
    found = catalog()
    if name not in found.entries:
        hint = did_you_mean(name, found.entries, "models")
        if found.unreachable:
            hint += "; not read: " + "; ".join(found.unreachable)
        raise UnknownNameError(f"unknown model '{name}'", hint)
    return found.entries[name].load()


def fetch(name: str, card: ModelCard, progress: bool = True) -> Path:
    """The verified weights of ``card`` (called ``name``): a Hub card's in the Hugging Face cache, any other's in
    the zoo's (``zoo.hub``)."""
    from zoo import hub

    return hfhub.download(card) if hfhub.is_hub_name(name) else hub.download(card, progress=progress)


def download(name: str, progress: bool = True) -> tuple[ModelCard, Path]:
    card = get_card(name)
    return card, fetch(name, card, progress)


def export_dir(name: str, profile: str = "default") -> Path:
    """Where ``zoo export model=NAME`` puts its folder by default, and where ``zoo infer model=NAME`` looks for it
    (a Hub name's ``:`` and ``/`` made safe for a folder name)."""
    return zoo_home() / "exports" / re.sub(r"[^\w.@-]+", "--", name) / profile
