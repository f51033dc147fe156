"""Reading and writing model weights: safetensors out, safetensors or .pth in.

A .pth file is read with ``torch.load(weights_only=True)``, so no pickle code
ever runs; keys saved from ``nn.DataParallel`` lose their ``module.`` prefix.
Unreadable files raise CheckpointError naming the file.
"""

import os
import re
from pathlib import Path

import torch
from torch import nn

from zoo.digests import sha256_file as sha256_file  # re-exported: callers import it from here
from zoo.errors import CheckpointError


def save_weights(model: nn.Module, path: Path) -> Path:
    """Student-only weights, written to a temp file then renamed into place."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(tmp), metadata={"format": "pt"})
        tmp.replace(path)
    except BaseException as err:  # a full disk leaves no half-written temp file behind
        tmp.unlink(missing_ok=True)
        code = re.search(r"os error (\d+)", str(err))
        if code and not isinstance(err, OSError):  # safetensors reports the OS's refusal as its own error type
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(path)) from err
        raise
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file '{path}' does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors, pickle and zip errors share no base class
        raise CheckpointError(f"cannot read weights '{path}': {str(err).splitlines()[0]}",
                              "the file is corrupt or truncated; re-create or re-download it") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' holds no state dict")
    if state and all(key.startswith("module.") for key in state):  # saved from nn.DataParallel (MEAL-V2's .pth)
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    state = read_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"weights '{path}' do not fit {type(model).__name__}: "
                              f"{str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else err}",
                              "check that the arch name matches the one the weights were trained with") from err
    return model

