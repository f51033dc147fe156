"""Lightning checkpoints written whole or not at all.

Lightning's own ``TorchCheckpointIO`` writes a checkpoint to the system's temp folder and then moves it over the run
folder's ``last.ckpt``; across file systems that move is a copy, so a full disk (or a kill) in the middle leaves a
truncated ``last.ckpt``, which the next resume reads. ``AtomicCheckpointIO`` writes it beside its final name and
renames it into place (``zoo.atomic``): a failed write leaves the previous checkpoint, or none, and no partial file.
"""

import io
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from zoo.atomic import atomic_write_bytes


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())
