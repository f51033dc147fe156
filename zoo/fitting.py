"""What every shape of run shares around its fits (``zoo.train``: one fit; ``zoo.staged``: one per stage;
``zoo.active``: one per round): the Lightning Trainer's arguments (resume checkpoint, atomic checkpoint writes,
logger, guards), a fit that lives in a folder of its own and resumes there, what a fit that stops says (Ctrl-C, a full
disk: what was kept and how to resume), and the end of a run, where the trained student is evaluated on val and test
and the run record is written."""

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.errors import Interrupted, ZooError, environment_error
from zoo.records import ModelInfo, Record, git_commit, hardware, now_iso, package_versions, write_record


@dataclass
class TrainResult:
    run_dir: Path
    record: Record


def finish_run(cfg: DictConfig, run_dir: Path, student, datamodule, module, teacher_infos: list[ModelInfo],
               teacher_metrics: dict[str, float], queries: dict[str, int], wall: dict[str, float], started: float,
               world_size: int, say=print, stages: list[dict] | None = None,
               rounds: list[dict] | None = None, search: dict | None = None,
               extra_metrics: dict[str, float] | None = None) -> TrainResult:
    """Evaluate the trained student (saved in ``run_dir``) on val and test and write the run record, which names the
    saved weights' sha256: every later reader (``zoo.runs.load_run``) checks that it still has those weights.
    ``extra_metrics`` are measured elsewhere and recorded beside them (a staged run's linear probe)."""
    from zoo.archs import count_flops, count_params
    from zoo.digests import sha256_file
    from zoo.evaluation import eval_device, evaluate, headline, smoke_limit

    eval_started = time.perf_counter()
    device, context, limit = eval_device(cfg), module.evaluation_context(), smoke_limit(cfg)
    metrics = {**evaluate(datamodule, [student], "val", device=device, limit_batches=limit, **context),
               **evaluate(datamodule, [student], "test", device=device, limit_batches=limit, **context),
               **(extra_metrics or {})}
    eval_seconds = time.perf_counter() - eval_started
    broken = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if broken:  # a student that evaluates to NaN is no result: no record, so nothing can put it on a board
        raise ZooError(f"the trained student's {', '.join(broken)} are not finite: no record was written",
                       f"the weights are in {run_dir / 'student.safetensors'} for inspection; lower optim.lr")
    wall = {name: round(seconds, 3) for name, seconds in
            {**wall, "eval": eval_seconds, "total": time.perf_counter() - started}.items()}
    record = Record(
        task=cfg.task, run_id=run_dir.name, method=cfg.method.name, seed=int(cfg.seed),
        student=ModelInfo(name=cfg.student.arch, params=count_params(student),
                          weights=str(run_dir / "student.safetensors"),
                          flops=count_flops(student, datamodule.input_shape),
                          sha256=sha256_file(run_dir / "student.safetensors")),
        teachers=teacher_infos, metrics=metrics, teacher_metrics=teacher_metrics,
        config=OmegaConf.to_container(cfg, resolve=True), teacher_queries=queries, wall_time_s=wall,
        data=datamodule.split_info(), git_commit=git_commit(), versions=package_versions(),
        hardware={**hardware(), "world_size": world_size}, created=now_iso(), stages=list(stages or []),
        rounds=list(rounds or []), search=dict(search or {}),
    )
    write_record(record, run_dir / "record.json")
    smoke = f"  (fast_dev_run: {limit} evaluation batch(es) only)" if limit else ""
    say(f"{cfg.method.name} student {cfg.student.arch}: {headline(datamodule, metrics)}{smoke}  ->  {run_dir}")
    return TrainResult(run_dir, record)


@contextlib.contextmanager
def stops_explained(interrupted: str, hint: str) -> Iterator[None]:
    """Around a fit: Ctrl-C (Lightning stops gracefully, then exits) becomes ``Interrupted(interrupted, hint)``, the
    message saying what was kept and the hint how to resume; a full disk or a folder that cannot be written becomes one
    line naming the path, with the same hint."""
    try:
        yield
    except SystemExit as stop:
        raise Interrupted(interrupted, hint) from stop
    except OSError as err:
        error = environment_error(err, then=hint)
        if error is None:
            raise
        raise error from err


def trainer_arguments(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from zoo.checkpoints import HashedCheckpointIO
    from zoo.guards import StopOnNonFiniteLoss

    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    # One file, overwritten at the end of every epoch: the resume point.
    callbacks = [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                                 enable_version_counter=False, every_n_epochs=1, save_on_train_epoch_end=True),
                 StopOnNonFiniteLoss()]
    if args.get("enable_progress_bar"):
        callbacks.append(RichProgressBar(leave=False))
    # CSVLogger writes logs/version_N, one per attempt: a resumed run keeps the earlier logs. Checkpoints are written
    # whole and hashed, so a resume can tell a damaged one (zoo.checkpoints).
    args.update(callbacks=callbacks, logger=CSVLogger(str(run_dir), name="logs"), plugins=[HashedCheckpointIO()],
                default_root_dir=str(run_dir), use_distributed_sampler=False, enable_model_summary=False)
    return args


def fit_in_folder(cfg: DictConfig, folder: Path, module, datamodule, callbacks: list | None, interrupted: str,
                  hint: str):
    """One Lightning fit whose checkpoints and logs live in ``folder`` (a stage's, a round's), resumed from its last
    finished epoch when one is saved there; returns the Trainer. Ctrl-C is ``Interrupted`` saying ``interrupted``
    with the resume ``hint`` (``stops_explained``)."""
    import lightning as L

    from zoo.runs import _check_checkpoint

    arguments = trainer_arguments(cfg, folder)
    arguments["callbacks"] += list(callbacks or [])
    trainer = L.Trainer(**arguments)
    last = folder / "checkpoints" / "last.ckpt"
    resume_from = str(last) if cfg.run.resume and last.is_file() else None
    if resume_from:
        _check_checkpoint(last)
    with stops_explained(interrupted, hint):
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=False)
    return trainer
