"""Selectors of an active-distillation run (``zoo.active``): which pool points the teacher is asked about.

Each round, the run shows a selector the current student's class probabilities on the points still in the pool and
asks for ``budget`` of them (positions into that pool); the teacher labels those points alone. A selector may also
``keep`` only some of the points once the teacher has answered (the oracle reference drops the teacher's mistakes,
reading the true labels that no real selector may read). One file per selector, each registering a ``Selector``
subclass in ``SELECTORS`` under its name (``active.selector``); ``zoo.selectors.gains`` holds the informativeness
measures, ``zoo.selectors.game`` RAD's game and its sampler.
"""

from typing import Any

import torch

from zoo.registry import SELECTORS


class Selector:
    """Base: ``choose`` picks pool positions, ``keep`` filters the queried points (all kept by default).

    ``settings`` is the run's ``active`` block (``gain``, ...); ``mistakes`` is m, the estimated number of pool
    points the teacher gets wrong (only RAD reads it).
    """

    def __init__(self, settings: Any):
        self.settings = settings

    def choose(self, probs: torch.Tensor, budget: int, mistakes: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def keep(self, teacher_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(targets), dtype=torch.bool)


def top(scores: torch.Tensor, budget: int) -> torch.Tensor:
    """Positions of the ``budget`` highest scores, ties broken by position (stable, so reproducible)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:budget]


__all__ = ["SELECTORS", "Selector", "top"]
