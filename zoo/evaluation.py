"""Evaluation outside Lightning: a split's exact metrics by the task's kind (``zoo.kinds``), on one process.

    evaluate(datamodule, models, "test", device="cpu")      -> {"test/acc": ..., "test/loss": ...}
    evaluate_run(run_dir, "test")                           -> the same for a finished run folder (``zoo eval``)

Training (``zoo.train``), teacher recipes (``zoo.recipes``) and ``zoo eval`` all come through here, so a run's
numbers and a later ``zoo eval`` of its folder are computed by the same code.
"""

from pathlib import Path
from typing import Any

from zoo.errors import ConfigError
from zoo.kinds import kind_of


def evaluate(datamodule, models: list, split: str = "test", *, device: str = "cpu", role: str = "student",
             limit_batches: int | None = None, **context: Any) -> dict[str, float]:
    """``<split>/<metric>`` of one model, or of an ensemble where the kind allows it. ``role="teacher"`` evaluates
    a teacher on its own inputs where the kind has such (retrieval: the rewrites); ``limit_batches`` evaluates a
    smoke run on the split's first batches only (``smoke_limit``); ``context`` is what the method adds
    (``DistillModule.evaluation_context``)."""
    return kind_of(datamodule).evaluate(datamodule, models, split, device=device, role=role,
                                        limit_batches=limit_batches, **context)


def smoke_limit(cfg: Any) -> int | None:
    """Evaluation batches of a ``trainer.fast_dev_run`` run (True: 1, N: N), None for a real run. Lightning runs
    that many batches of training and validation; a smoke run's evaluation is capped alike, so that it answers
    "does it run" in seconds. Its metrics are not results (``zoo leaderboard`` refuses such records); teachers
    trained by a recipe are evaluated in full whatever the run (their metrics are stored and reused)."""
    runs = cfg.trainer.get("fast_dev_run", False)
    if runs is True:
        return 1
    if isinstance(runs, int) and not isinstance(runs, bool) and runs > 0:
        return runs
    return None


def eval_device(cfg: Any) -> str:
    """Where the evaluation loops run: the trainer's GPU when it has one (a DETR over KITTI val is slow on CPU)."""
    import torch

    if str(cfg.trainer.accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def headline(datamodule, metrics: dict[str, float]) -> str:
    """The line printed after a run: the kind's headline test metric, else every test metric."""
    key = kind_of(datamodule).headline_metric
    if key in metrics:
        return f"{key} {metrics[key]:.4f}"
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("test/"))


def evaluate_run(run_dir: Path, split: str = "test") -> dict[str, float]:
    """A finished run folder's student evaluated again on ``split`` as the run evaluated it: with the context its
    kind rebuilds (retrieval: the frozen document encoder from the record) and, for a smoke run, on the same first
    batches (``smoke_limit``), so that the numbers are the record's."""
    from zoo.runs import load_run

    loaded = load_run(Path(run_dir))
    if split not in loaded.datamodule.splits:
        raise ConfigError(f"unknown split '{split}'", f"valid splits: {', '.join(loaded.datamodule.splits)}")
    context = kind_of(loaded.datamodule).run_context(loaded)
    return evaluate(loaded.datamodule, [loaded.student], split, limit_batches=smoke_limit(loaded.cfg), **context)
