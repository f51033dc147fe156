"""A task's ``reproduce.arms``: what each entry names, and which of a user's overrides apply to it.

An entry is a method option (``kd``: arm ``kd``, method config ``tasks/method/kd.yaml``) or a mapping
``{name, method, overrides, seeds}``; ``zoo.reproduce`` runs them and ``zoo.leaderboard`` names board rows after
them, so both read them here.
"""

from typing import Any

from omegaconf import OmegaConf

from zoo.config import group_options, split_override
from zoo.errors import ConfigError, did_you_mean


def arm_spec(entry: Any) -> tuple[str, str, list[str], int | None]:
    """(label, method option, the arm's own overrides, its seed cap or None) of one ``reproduce.arms`` entry."""
    if isinstance(entry, str):
        return entry, entry, [], None
    unknown = set(entry) - {"name", "method", "overrides", "seeds"}
    if unknown or "method" not in entry:
        raise ConfigError(f"reproduce arm {dict(entry)} is not a method name or {{name, method, overrides, seeds}}",
                          f"unknown keys: {sorted(unknown)}" if unknown else "give the arm a 'method'")
    cap = entry.get("seeds")
    if cap is not None and int(cap) < 1:
        raise ConfigError(f"reproduce arm {entry.get('name', entry['method'])}: seeds must be at least 1, got {cap}")
    return (str(entry.get("name", entry["method"])), str(entry["method"]),
            [str(o) for o in entry.get("overrides", [])], None if cap is None else int(cap))


def shadowed(own: list[str], overrides: list[str]) -> list[str]:
    """The user's overrides whose key the arm sets itself (the arm's value is the one used), the last per key."""
    own_keys = {split_override(text)[0] for text in own}
    last = {split_override(text)[0]: text for text in overrides}
    return [text for key, text in last.items() if key in own_keys]


def arm_overrides(arm: str, overrides: list[str]) -> list[str]:
    """The user's overrides that apply to method ``arm``: method.* keys only where that method has them."""
    if arm not in group_options("method"):
        raise ConfigError(f"unknown arm '{arm}'", did_you_mean(arm, group_options("method"), "methods"))
    method_keys = option_keys(arm)
    kept = []
    for text in overrides:
        key, _ = split_override(text)
        if key == "method" or (key.startswith("method.") and key.split(".", 1)[1].split(".")[0] not in method_keys):
            continue
        kept.append(text)
    return kept + [f"method={arm}"]


def option_keys(option: str) -> set[str]:
    """The keys of method config ``option``, with those of the configs it builds on (its ``defaults`` list, e.g.
    ``lelp_tweets`` on ``lelp``)."""
    from zoo.paths import data_dir

    raw = OmegaConf.to_container(OmegaConf.load(data_dir("tasks") / "method" / f"{option}.yaml"))
    keys = set(raw) - {"defaults"}
    for base in raw.get("defaults") or []:
        if isinstance(base, str) and base != "_self_":
            keys |= option_keys(base)
    return keys
