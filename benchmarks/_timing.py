"""Timing pieces shared by the benchmark scripts."""

import time

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
