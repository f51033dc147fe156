"""Where an export or a bench gets its PyTorch model and held-out data from.

- a run folder: config.yaml + student.safetensors + record.json, rebuilt the way
  ``zoo eval`` does (``zoo.commands.evaluate_run``); the run must have finished;
- a model card (``models/<arch>.<tag>.yaml``): weights through ``zoo.hub``
  (cached, verified) and data from the card's task config;
- an export folder: its card.yaml names the arch, class count and input shape,
  and its student.safetensors (checked against the card's sha256) the weights.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import torch
from torch import nn

from zoo.cards import ModelCard, load_card
from zoo.errors import CheckpointError, ConfigError, RecordError
from zoo.records import Record, read_record


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: Any  # the run's DictConfig
    record: Record
    datamodule: Any
    student: nn.Module


def load_run(run_dir: Path) -> LoadedRun:
    """A finished run's config, record, data module and student (weights loaded, eval mode)."""
    from zoo.archs import arch_kwargs, create
    from zoo.config import load_run_config
    from zoo.registry import DATASETS
    from zoo.train import quiet_lightning
    from zoo.weights import load_weights

    quiet_lightning()
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if not (run_dir / "record.json").is_file():
        raise RecordError(f"run '{run_dir}' has no record.json: it has not finished",
                          f"finish it first: zoo train task={cfg.task} run.id={run_dir.name}")
    record = read_record(run_dir / "record.json")
    datamodule = DATASETS.get(cfg.data.name)(cfg.data)
    student = create(cfg.student.arch, datamodule.num_classes, datamodule.input_shape, **arch_kwargs(cfg.student))
    load_weights(student, run_dir / "student.safetensors")
    return LoadedRun(run_dir, cfg, record, datamodule, student.eval())


def held_out_batches(datamodule, split: str = "test") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) over a whole split, in the loader's fixed order."""
    if split not in datamodule.splits:
        raise ConfigError(f"the data has no '{split}' split to check the export on",
                          f"its splits: {', '.join(datamodule.splits)}")
    for batch in datamodule.eval_loader(split):
        yield batch["inputs"], batch["targets"]


def read_folder_card(folder: Path) -> ModelCard:
    """card.yaml of an export folder (named after the model, not the file, so the name check is skipped)."""
    path = Path(folder) / "card.yaml"
    if not path.is_file():
        raise ConfigError(f"no card.yaml in '{folder}'", "pass model=<a folder written by zoo export>")
    return load_card(path, check_name=False)


def load_export_folder(folder: Path) -> tuple[nn.Module, ModelCard]:
    """The PyTorch model an export folder was made from, rebuilt from its card and verified weights."""
    from zoo.archs import create
    from zoo.weights import load_weights, sha256_file

    folder = Path(folder)
    card = read_folder_card(folder)
    weights = folder / "student.safetensors"  # the card's file:// URL names this file where it was written
    url = card.weights.urls[0]
    if not weights.is_file() and url.startswith("file://"):
        weights = Path(unquote(urlparse(url).path))
    if card.weights.sha256 and sha256_file(weights) != card.weights.sha256:
        raise CheckpointError(f"'{weights}' does not match the sha256 in {folder / 'card.yaml'}",
                              "the folder was modified after export; re-export it")
    model = create(card.arch, card.num_classes, tuple(card.input.shape))
    load_weights(model, weights)
    return model.eval(), card


def export_card(name: str, out: str | Path | None, profile: str, say: Callable[[str], None] = print):
    """Export a published model card's checkpoint, checked on its task's test split."""
    import copy

    from zoo.cards import get_card
    from zoo.config import compose
    from zoo.export.onnx_export import _say_parity, export_module
    from zoo.export.preprocess import spec_for_datamodule
    from zoo.models_api import create_model
    from zoo.paths import zoo_home
    from zoo.registry import DATASETS

    card = get_card(name)
    student = create_model(name, pretrained=True).eval()  # zoo.hub: cached, sha256-verified download
    cfg = compose(card.task)
    datamodule = DATASETS.get(cfg.data.name)(cfg.data)
    if datamodule.num_classes != card.num_classes or list(datamodule.input_shape) != list(card.input.shape):
        raise ConfigError(f"card '{name}' ({card.num_classes} classes, input {card.input.shape}) does not fit "
                          f"task {card.task}'s data ({datamodule.num_classes} classes, input "
                          f"{list(datamodule.input_shape)})")
    spec = spec_for_datamodule(datamodule, "float32")
    target = Path(out) if out else zoo_home() / "exports" / name / profile
    say(f"exporting model {name} with profile '{profile}' ...")
    result = export_module(student, target, profile, input_shape=tuple(card.input.shape),
                           batches=held_out_batches(datamodule, "test"), spec=spec, card=copy.deepcopy(card),
                           source={"kind": "card", "card": name, "task": card.task,
                                   "data": {"name": datamodule.name, "fingerprint": datamodule.fingerprint}})
    _say_parity(result, say)
    return result
