"""Export profiles: export/<name>.yaml, read strictly into an ``ExportProfile``.

A profile fixes how a student is exported and how closely the ONNX model must
agree with PyTorch before the export counts:

    opset: 18
    exporter: dynamo                        # optional; dynamo (default) | torchscript
    dynamic_axes: {batch: true, sequence: false}
    precision: fp32                         # fp32 | fp16 (weights, inputs and outputs in half)
    tolerance: {max_abs_diff: 1.0e-4, metric_abs_diff: 0.0}

``max_abs_diff`` bounds |logits_onnx - logits_torch| over every held-out sample;
``metric_abs_diff`` bounds |metric_onnx - metric_torch| (top-1 accuracy for
classifiers). An unknown key, a missing key or a value of the wrong type is a
ConfigError naming the nearest valid key: a typo must never silently fall back
to a default tolerance. ``name`` may also be a path to a .yaml file.
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ConfigError, UnknownNameError, did_you_mean
from zoo.paths import data_dir

PRECISIONS = ("fp32", "fp16")
EXPORTERS = ("dynamo", "torchscript")
_TOP_KEYS = {"opset", "exporter", "dynamic_axes", "precision", "tolerance"}
_OPTIONAL = {"exporter"}
_AXES_KEYS = {"batch", "sequence"}
_TOLERANCE_KEYS = {"max_abs_diff", "metric_abs_diff"}


@dataclass(frozen=True)
class ExportProfile:
    name: str
    opset: int
    dynamic_batch: bool
    dynamic_sequence: bool  # for retrievers' token inputs; image classifiers have no such axis
    precision: str
    max_abs_diff: float
    metric_abs_diff: float
    exporter: str = "dynamo"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_names() -> list[str]:
    return sorted(p.stem for p in data_dir("export").glob("*.yaml"))


def load_profile(name: str) -> ExportProfile:
    """The profile ``export/<name>.yaml``, or the .yaml file at path ``name``."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = data_dir("export") / f"{name}.yaml"
        if not path.is_file():
            raise UnknownNameError(f"unknown export profile '{name}'",
                                   did_you_mean(name, profile_names(), "profiles"))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"export profile {path}: unreadable ({str(err).splitlines()[0]})") from err
    return parse_profile(raw, path.stem, str(path))


def parse_profile(raw: Any, name: str, source: str = "<profile>") -> ExportProfile:
    top = _mapping(raw, _TOP_KEYS, source, "", optional=_OPTIONAL)
    axes = _mapping(top["dynamic_axes"], _AXES_KEYS, source, "dynamic_axes.")
    tolerance = _mapping(top["tolerance"], _TOLERANCE_KEYS, source, "tolerance.")
    opset = top["opset"]
    if not isinstance(opset, int) or isinstance(opset, bool) or not 7 <= opset <= 30:
        raise ConfigError(f"export profile {source}: opset must be an integer opset version, got {opset!r}")
    precision, exporter = top["precision"], top.get("exporter", "dynamo")
    if precision not in PRECISIONS:
        raise ConfigError(f"export profile {source}: precision must be one of {', '.join(PRECISIONS)}, "
                          f"got {precision!r}")
    if exporter not in EXPORTERS:
        raise ConfigError(f"export profile {source}: exporter must be one of {', '.join(EXPORTERS)}, "
                          f"got {exporter!r}")
    for key, value in axes.items():
        if not isinstance(value, bool):
            raise ConfigError(f"export profile {source}: dynamic_axes.{key} must be true or false, got {value!r}")
    for key, value in tolerance.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ConfigError(f"export profile {source}: tolerance.{key} must be a number >= 0, got {value!r}")
    return ExportProfile(name=name, opset=opset, dynamic_batch=axes["batch"], dynamic_sequence=axes["sequence"],
                         precision=precision, max_abs_diff=float(tolerance["max_abs_diff"]),
                         metric_abs_diff=float(tolerance["metric_abs_diff"]), exporter=exporter)


def _mapping(raw: Any, keys: set[str], source: str, prefix: str, optional: set[str] = frozenset()) -> dict:
    """``raw`` as a dict holding exactly ``keys`` (``optional`` ones may be left out)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"export profile {source}: {prefix.rstrip('.') or 'the file'} must be a mapping")
    for key in raw:
        if key not in keys:
            raise ConfigError(f"export profile {source}: unknown key '{prefix}{key}'",
                              did_you_mean(str(key), sorted(keys), "keys" + (f" of {prefix[:-1]}" if prefix else "")))
    missing = sorted(keys - set(raw) - optional)
    if missing:
        raise ConfigError(f"export profile {source}: missing key '{prefix}{missing[0]}'",
                          f"a profile sets {', '.join(sorted(keys))}")
    return raw
