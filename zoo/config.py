"""Compose a task config: tasks/<task>.yaml + group choices + key=value overrides.

Uses Hydra's compose API (never ``@hydra.main``: the zoo must not change the
working directory or take over logging) for the task file and its group choices
(``method=ce``); ``key=value`` overrides are then parsed with Hydra's override
grammar and applied here, after checking that the key exists and the value has
the default's type. So an unknown key, an unknown group option or a value of the
wrong type is one line naming the nearest valid choice, not a Hydra traceback.
The result is in struct mode.
"""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from zoo.errors import ConfigError, UnknownNameError, did_you_mean
from zoo.paths import data_dir


def task_names() -> list[str]:
    return sorted(p.stem for p in data_dir("tasks").glob("*.yaml"))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (data_dir("tasks") / group).glob("*.yaml"))


def groups() -> list[str]:
    return sorted(p.name for p in data_dir("tasks").iterdir() if p.is_dir())


def split_override(text: str) -> tuple[str, str]:
    if "=" not in text or text.startswith("="):
        raise ConfigError(f"expected key=value, got '{text}'",
                          "overrides look like trainer.max_epochs=3 or method=ce")
    key, value = text.split("=", 1)
    return key.strip(), value


def compose(task: str, overrides: list[str] | None = None) -> DictConfig:
    """The resolved, struct-mode config of ``task`` with ``overrides`` applied."""
    overrides = list(overrides or [])
    if task not in task_names():
        raise UnknownNameError(f"unknown task '{task}'", did_you_mean(task, task_names(), "tasks"))
    group_choices = []
    value_overrides = []
    for text in overrides:
        key, value = split_override(text)
        if key in groups():
            if value not in group_options(key):
                raise ConfigError(f"unknown {key} '{value}'",
                                  did_you_mean(value, group_options(key), f"{key} options"))
            group_choices.append(text)
        else:
            value_overrides.append((key, value, text))

    cfg = _hydra_compose(task, group_choices)
    for key, _, text in value_overrides:
        adding = key.startswith("+") or _optional_recipe_key(cfg, key)
        key = key.lstrip("+")
        _check_key_exists(cfg, key, adding)
        value = parse_value(text)
        if not adding:
            _check_type(OmegaConf.select(cfg, key), value, key, text)
        with _open_struct(cfg):
            OmegaConf.update(cfg, key, value, merge=False, force_add=adding)
    OmegaConf.set_struct(cfg, True)
    check_ranges(cfg)
    return cfg


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# Values that torch, numpy or Lightning would only refuse deep inside a run (after its folder exists, or after a
# teacher trained for an hour): (key, test, what it must be). A key matches itself and any key ending in ".<key>", so
# "optim.lr" also checks teacher.recipe.optim.lr and "recipe.epochs" every teacher role's recipe.
RANGES = (
    ("batch_size", lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    ("eval_batch_size", lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    ("optim.lr", lambda v: _is_number(v) and v > 0, "a number above 0"),
    ("optim.weight_decay", lambda v: _is_number(v) and v >= 0, "a number of at least 0"),
    ("trainer.max_epochs", lambda v: _is_int(v) and v >= 0, "an integer of at least 0 (0: evaluate only)"),
    ("recipe.epochs", lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    ("init_recipe.epochs", lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
    ("seed", lambda v: _is_int(v) and 0 <= v < 2**32, "an integer from 0 to 2**32 - 1 (numpy's seeds)"),
    ("reproduce.seeds", lambda v: _is_int(v) and v >= 1, "an integer of at least 1"),
)


def check_ranges(cfg: DictConfig) -> None:
    """A one-line error for a value out of its range, before any data is read or run folder made."""
    for key in flat_keys(cfg):
        for suffix, ok, rule in RANGES:
            if key != suffix and not key.endswith("." + suffix):
                continue
            value = OmegaConf.select(cfg, key, default=None)
            if value is not None and not ok(value):
                raise ConfigError(f"{key}={value!r}: must be {rule}", f"set {key} to {rule}")


# Keys a recipe block (teacher.recipe, student.init_recipe, a staged role's recipe) reads only when they are there
# (zoo.recipes): they may be set without Hydra's "+", like the keys every recipe has.
RECIPE_OPTIONAL = ("smoke", "limit_train_batches", "gradient_clip_val", "method", "data", "pretrained")


def _optional_recipe_key(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    if not parent.endswith("recipe") or leaf not in RECIPE_OPTIONAL:
        return False
    node = OmegaConf.select(cfg, parent, default=None)
    return isinstance(node, DictConfig) and leaf not in node


def _hydra_compose(task: str, overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    tasks_dir = str(Path(data_dir("tasks")).resolve())
    try:
        with initialize_config_dir(config_dir=tasks_dir, version_base="1.3", job_name="zoo"):
            cfg = hydra_compose(config_name=task, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        first_line = str(err).strip().splitlines()[0]
        raise ConfigError(f"cannot compose task '{task}': {first_line}") from err
    with _open_struct(cfg):
        cfg.pop("hydra", None)
    return cfg


class _open_struct:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self):
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, True)


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(cfg, DictConfig):
        for key in cfg.keys():
            path = f"{prefix}{key}"
            keys.append(path)
            keys.extend(flat_keys(cfg._get_node(key), path + "."))
    return keys


def _check_key_exists(cfg: DictConfig, key: str, adding: bool) -> None:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if adding:
        if not isinstance(node, DictConfig):
            raise ConfigError(f"cannot add '{key}': '{parent}' is not a mapping")
        return
    if isinstance(node, DictConfig) and leaf in node:
        return
    if isinstance(node, ListConfig) and leaf.isdigit() and int(leaf) < len(node):
        return
    raise ConfigError(f"unknown config key '{key}'", did_you_mean(key, flat_keys(cfg), "keys"))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, ListConfig)):
        return "list"
    return "mapping"


def parse_value(text: str) -> Any:
    """The value of ``key=value`` in Hydra's override grammar (ints, floats, null, lists, ...)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides([text])[0].value()
    except HydraException as err:
        raise ConfigError(f"cannot parse override '{text}': {str(err).strip().splitlines()[0]}") from err


def _check_type(default: Any, value: Any, key: str, text: str) -> None:
    before, after = _kind(default), _kind(value)
    if before == "null" or after == "null" or before == after or (before, after) == ("float", "int"):
        return
    raise ConfigError(f"'{key}' expects {before}, got {text.split('=', 1)[1]!r} ({after})",
                      f"the default is {default!r}")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
