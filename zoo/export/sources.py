"""Export folders read back: the card an export folder carries, and the PyTorch model it was made from.

An export folder's card.yaml names the arch, class count and input shape, and its student.safetensors (checked
against the card's sha256) the weights; ``zoo bench model=DIR`` compares that model with the folder's ONNX graph.
"""

from pathlib import Path
from urllib.parse import unquote, urlparse

from torch import nn

from zoo.cards import ModelCard, load_card
from zoo.errors import CheckpointError, ConfigError


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
