"""Model cards: models/<arch>.<tag>.yaml, one per released checkpoint (typed, validated).

A card says what a checkpoint is and where its weights live:

    name: mlp.tiny.kd_digits          # <arch>.<tag>, equal to the file name
    arch: mlp.tiny                    # an ARCHS key
    task: kd_digits
    num_classes: 10
    input: {shape: [1, 8, 8], mean: null, std: null, tokenizer: null}
    weights:
      urls: [https://..., hf://org/repo/file.safetensors]   # mirrors, tried in order
      sha256: null                    # null: not yet known (the first verified download records it)
      size: null
      format: safetensors             # or pth (read with weights_only=True)
    metrics: [{name: test/acc, value: 0.96, source: "record:<run-id>"}]   # or "paper:<citation>", "export:<check>"
    teacher: convnet.base
    license: apache-2.0
    paper: null

YAML is read with the safe loader and only these fields are accepted. Where cards come from (the built-in models/,
$ZOO_HOME/models/, mirrors, the Hub) and how a name finds one: ``zoo.catalog``.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ConfigError

WEIGHT_FORMATS = ("safetensors", "pth")
URL_SCHEMES = ("https://", "http://", "hf://", "file://")


@dataclass
class WeightsSpec:
    urls: list[str]
    sha256: str | None = None
    size: int | None = None
    format: str = "safetensors"


@dataclass
class InputSpec:
    shape: list[int]
    mean: list[float] | None = None
    std: list[float] | None = None
    tokenizer: str | None = None


@dataclass
class MetricEntry:
    name: str
    value: float
    source: str  # "record:<run-id>", "paper:<citation>" or "export:<the check that measured it>" (zoo export)


@dataclass
class ModelCard:
    name: str
    arch: str
    task: str
    num_classes: int
    input: InputSpec
    weights: WeightsSpec
    metrics: list[MetricEntry] = field(default_factory=list)
    teacher: str | list[str] | None = None
    license: str | None = None
    paper: str | None = None

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)


def _fail(source: str, problem: str) -> ConfigError:
    return ConfigError(f"model card {source}: {problem}")


def parse_card(raw: Any, source: str) -> ModelCard:
    if not isinstance(raw, dict):
        raise _fail(source, "not a mapping")
    known = {f for f in ModelCard.__dataclass_fields__}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(source, f"unknown field '{unknown[0]}'") from None
    try:
        card = ModelCard(**{**raw, "input": InputSpec(**raw["input"]), "weights": WeightsSpec(**raw["weights"]),
                            "metrics": [MetricEntry(**m) for m in raw.get("metrics") or []]})
    except (KeyError, TypeError) as err:
        raise _fail(source, f"missing or unexpected field ({err})") from err
    if not card.weights.urls or not all(u.startswith(URL_SCHEMES) for u in card.weights.urls):
        raise _fail(source, f"weights.urls must list {', '.join(URL_SCHEMES)} addresses")
    if card.weights.format not in WEIGHT_FORMATS:
        raise _fail(source, f"weights.format must be one of {', '.join(WEIGHT_FORMATS)}")
    if card.weights.sha256 is not None and (len(card.weights.sha256) != 64
                                            or any(c not in "0123456789abcdef" for c in card.weights.sha256)):
        raise _fail(source, "weights.sha256 must be 64 lowercase hex digits, or null when not yet known")
    for metric in card.metrics:
        if not metric.source.startswith(("record:", "paper:", "export:")):
            raise _fail(source, f"metric '{metric.name}' must cite 'record:<run-id>', 'paper:<citation>' or "
                                "'export:<check>'")
    return card


def load_card(path: Path, check_name: bool = True) -> ModelCard:
    """A card file; ``check_name`` asks that the card's name equal the file name (models/<name>.yaml)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise _fail(str(path), f"unreadable ({str(err).splitlines()[0]})") from err
    card = parse_card(raw, str(path))
    if check_name and card.name != path.stem:
        raise _fail(str(path), f"name '{card.name}' differs from the file name '{path.stem}'")
    return card
