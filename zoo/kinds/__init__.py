"""Kinds of tasks: declared once, by the data module (``kind = "detection"``), and looked up everywhere else.

A kind says how a task's students are judged and shipped, so that no code has to guess it from a model's or a data
set's attributes:

- ``headline``: the metric printed after a run, compared by ``zoo reproduce`` and first on the leaderboard
  (``test/<headline>``);
- ``evaluate(datamodule, models, split, device=, role=, limit_batches=, **context)``: the split's metrics
  (``<split>/<metric>``) of one model or an ensemble; ``role="teacher"`` lets a kind evaluate a teacher on its own
  inputs (retrieval: the rewrites), ``limit_batches`` caps a smoke run's evaluation (the first N evaluation
  batches, or N batches' worth of queries), ``context`` carries what the method adds (retrieval: the frozen document
  encoder);
- ``run_context(loaded_run)``: that context rebuilt for a finished run folder (``zoo eval``);
- ``teacher_cache``: whether per-sample teacher outputs may be cached on disk (classification: yes; detection and
  retrieval: the teacher's outputs depend on more than the sample);
- ``alone_method``: the teacher-free method that trains a model of this kind by itself, the default of a teacher's
  recipe (``ce`` for classifiers, ``detr_alone`` for detectors);
- ``export(loaded_run, out, profile, say)`` and ``export_profile``: ``zoo export``'s exporter and its default
  profile; None where the kind cannot be exported yet (a clear error, never a guess).

One module per kind in this package, each registering one ``Kind`` in ``KINDS``; a new kind is a new file.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoo.registry import KINDS

# Kinds of data that only feed stages of a staged run (ERNIE-Tiny's general distillation reads unlabelled text,
# LLaVA-MoD's preference stage reads preference pairs): no
# task is judged, exported or ranked on them, so they have no Kind; the stages evaluate on the task's own data.
STAGE_ONLY_KINDS = ("unlabelled_text", "visual_preference")


def _no_context(loaded_run: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Kind:
    name: str
    headline: str
    evaluate: Callable[..., dict[str, float]]
    teacher_cache: bool = False
    alone_method: str | None = None
    run_context: Callable[[Any], dict[str, Any]] = field(default=_no_context)
    export: Callable[..., Any] | None = None
    export_profile: str | None = None

    @property
    def headline_metric(self) -> str:
        """The test-split key of the headline metric in run records, e.g. ``test/acc``."""
        return f"test/{self.headline}"


def kind_of(datamodule: Any) -> Kind:
    """The ``Kind`` a data module (or data module class) declares."""
    return KINDS.get(datamodule.kind)


__all__ = ["KINDS", "STAGE_ONLY_KINDS", "Kind", "kind_of"]
