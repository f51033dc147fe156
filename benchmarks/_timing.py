"""Timing pieces shared by the benchmark scripts, and the ZOO_HOME they run in."""

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


def sync() -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class EpochTimer(Callback):
    """Seconds inside training epochs (on_train_epoch_start -> on_train_epoch_end), summed over epochs."""

    seconds = 0.0

    def on_train_epoch_start(self, trainer, module):
        sync()
        self.begin = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        sync()
        self.seconds += time.perf_counter() - self.begin


@contextlib.contextmanager
def zoo_home(path: str | None, prefix: str = "zoo-bench-") -> Iterator[None]:
    """Run the block with ZOO_HOME at ``path`` (kept), or at a fresh temporary folder deleted afterwards; the
    previous ZOO_HOME is restored after the block."""
    previous = os.environ.get("ZOO_HOME")
    try:
        if path:
            os.environ["ZOO_HOME"] = str(Path(path).expanduser())
            yield
            return
        with tempfile.TemporaryDirectory(prefix=prefix) as temp:
            os.environ["ZOO_HOME"] = temp
            yield
    finally:
        if previous is None:
            os.environ.pop("ZOO_HOME", None)
        else:
            os.environ["ZOO_HOME"] = previous
