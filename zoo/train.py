"""The path of one run: config -> data -> teachers -> student -> fit -> evaluate -> run folder.

The run folder (``zoo.runs``) receives config.yaml at the start, Lightning's last.ckpt after every epoch (the
resume point), and at the end student.safetensors (the student alone) and record.json. A run whose folder has a
checkpoint but no record is resumed by giving its id again: ``zoo train task=... run.id=<id>``.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.errors import ZooError
from zoo.records import ModelInfo, Record, git_commit, hardware, now_iso, package_versions, write_record
from zoo.runs import prepare_run_dir, quiet_lightning


@dataclass
class TrainResult:
    run_dir: Path
    record: Record


def train(cfg: DictConfig, say=print, callbacks: list | None = None) -> TrainResult | None:
    """Run one task config end to end. Returns None on non-zero ranks of a distributed run.

    ``callbacks`` are extra Lightning callbacks (for embedding and for tests).
    """
    import lightning as L

    from zoo.methods.base import MethodContext
    from zoo.registry import DATASETS, METHODS
    from zoo.students import create_student, student_start_weights
    from zoo.teachers import prepare_teachers
    from zoo.weights import save_weights

    if cfg.get("stages"):  # a staged run: one fit per stage, in one run folder (zoo.staged)
        from zoo.staged import train_staged

        return train_staged(cfg, say, callbacks)
    quiet_lightning()
    started = time.perf_counter()
    method_cls, data_cls = METHODS.get(cfg.method.name), DATASETS.get(cfg.data.name)
    method_cls.check_kind(data_cls.kind, cfg.method.name)  # before any data is read or teacher trained
    datamodule = data_cls(cfg.data, shuffle_seed=int(cfg.seed))
    # Rank 0 trains missing teachers before the distributed launch; the other ranks find them stored.
    teachers, teacher_infos, teacher_metrics = ([], [], {})
    if method_cls.uses_teachers:
        teachers, teacher_infos, teacher_metrics = prepare_teachers(cfg, datamodule, say)
        datamodule.attach_teachers(teachers, say)
    store = None
    if teachers and cfg.get("soft_labels") is not None and cfg.soft_labels.enabled:
        from zoo.soft_label_store import prepare_store

        store = prepare_store(cfg, datamodule, teachers, [info.name for info in teacher_infos], say)
    student_init = student_start_weights(cfg, datamodule, say)
    teacher_seconds = time.perf_counter() - started

    student = create_student(cfg, datamodule, student_init)
    cache = make_teacher_cache(cfg, datamodule, teachers, teacher_infos)
    module = method_cls(student, teachers, MethodContext.of(datamodule, cfg.method, cfg.optim, cache))

    run_dir, resume_from = prepare_run_dir(cfg)
    arguments = trainer_arguments(cfg, run_dir)
    arguments["callbacks"] += list(callbacks or [])
    trainer = L.Trainer(**arguments)
    fit_started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=False)
    except SystemExit as stop:  # Lightning turns Ctrl-C into a graceful stop, then exits
        raise ZooError(f"training interrupted; the last finished epoch is saved in {run_dir}",
                       f"resume with: zoo train task={cfg.task} run.id={run_dir.name}") from stop
    fit_seconds = time.perf_counter() - fit_started
    if not trainer.is_global_zero:
        return None

    save_weights(student, run_dir / "student.safetensors")
    queries = dict(module.total_teacher_calls)
    if cache is not None:
        queries.update({f"cache_{k}": v for k, v in cache.stats.items()})
    if store is not None:
        queries.update({f"store_{k}": v for k, v in store.stats.items()})
    wall = {"teachers": teacher_seconds, "fit": fit_seconds}
    return finish_run(cfg, run_dir, student, datamodule, module, teacher_infos, teacher_metrics, queries, wall,
                      started, trainer.world_size, say)


def finish_run(cfg: DictConfig, run_dir: Path, student, datamodule, module, teacher_infos: list[ModelInfo],
               teacher_metrics: dict[str, float], queries: dict[str, int], wall: dict[str, float], started: float,
               world_size: int, say=print, stages: list[dict] | None = None) -> TrainResult:
    """Evaluate the trained student (saved in ``run_dir``) on val and test and write the run record."""
    from zoo.archs import count_flops, count_params
    from zoo.evaluation import eval_device, evaluate, headline, smoke_limit

    eval_started = time.perf_counter()
    device, context, limit = eval_device(cfg), module.evaluation_context(), smoke_limit(cfg)
    metrics = {**evaluate(datamodule, [student], "val", device=device, limit_batches=limit, **context),
               **evaluate(datamodule, [student], "test", device=device, limit_batches=limit, **context)}
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
                          flops=count_flops(student, datamodule.input_shape)),
        teachers=teacher_infos, metrics=metrics, teacher_metrics=teacher_metrics,
        config=OmegaConf.to_container(cfg, resolve=True), teacher_queries=queries, wall_time_s=wall,
        data=datamodule.split_info(), git_commit=git_commit(), versions=package_versions(),
        hardware={**hardware(), "world_size": world_size}, created=now_iso(), stages=list(stages or []),
    )
    write_record(record, run_dir / "record.json")
    smoke = f"  (fast_dev_run: {limit} evaluation batch(es) only)" if limit else ""
    say(f"{cfg.method.name} student {cfg.student.arch}: {headline(datamodule, metrics)}{smoke}  ->  {run_dir}")
    return TrainResult(run_dir, record)


def make_teacher_cache(cfg: DictConfig, datamodule, teachers: list, infos: list[ModelInfo]):
    """The teacher-output cache, where the task's kind allows one and the training inputs are deterministic."""
    from zoo.kinds import kind_of
    from zoo.paths import teacher_outputs_dir
    from zoo.teacher_cache import TeacherOutputCache, teacher_fingerprint

    if not teachers or not cfg.cache.enabled or not kind_of(datamodule).teacher_cache:
        return None
    if datamodule.transform_fingerprint is None or cfg.trainer.fast_dev_run:
        return None  # random inputs cannot be keyed by index; a smoke test must not leave outputs behind
    key = {"teachers": teacher_fingerprint([i.name for i in infos], teachers), "data": datamodule.fingerprint,
           "transform": datamodule.transform_fingerprint, "split": "train",
           "features": ",".join(cfg.method.get("teacher_features") or [])}
    return TeacherOutputCache(teacher_outputs_dir(), key, len(datamodule.splits["train"]))


def trainer_arguments(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    from zoo.guards import StopOnNonFiniteLoss

    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    # One file, overwritten at the end of every epoch: the resume point.
    callbacks = [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                                 enable_version_counter=False, every_n_epochs=1, save_on_train_epoch_end=True),
                 StopOnNonFiniteLoss()]
    if args.get("enable_progress_bar"):
        callbacks.append(RichProgressBar(leave=False))
    # CSVLogger writes logs/version_N, one per attempt: a resumed run keeps the earlier logs.
    args.update(callbacks=callbacks, logger=CSVLogger(str(run_dir), name="logs"),
                default_root_dir=str(run_dir), use_distributed_sampler=False, enable_model_summary=False)
    return args
