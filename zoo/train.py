"""The path of one run: config -> data -> teachers -> student -> fit -> evaluate -> run folder.

The run folder (``zoo.runs``) receives config.yaml at the start, Lightning's last.ckpt after every epoch (the
resume point), and at the end student.safetensors (the student alone) and record.json. A run whose folder has a
checkpoint but no record is resumed by giving its id again: ``zoo train task=... run.id=<id>`` (its stored config
decides, ``zoo.runs.run_config``). The run folder is locked while this process trains in it.
"""

import time
from pathlib import Path

from omegaconf import DictConfig

from zoo.fitting import TrainResult, finish_run, stops_explained, trainer_arguments
from zoo.records import ModelInfo
from zoo.runs import (
    check_writable,
    lock_existing_run,
    prepare_run_dir,
    quiet_lightning,
    resume_hint,
    run_locks,
)


def train(cfg: DictConfig, say=print, callbacks: list | None = None) -> TrainResult | None:
    """Run one task config end to end. Returns None on non-zero ranks of a distributed run.

    ``callbacks`` are extra Lightning callbacks (for embedding and for tests).
    """
    check_writable(Path(cfg.run.root) / cfg.task)  # known before hours of teacher training, not after
    with run_locks():  # the run folder's lock is let go when the run ends, also in a longer process (reproduce)
        lock_existing_run(cfg)
        return _train(cfg, say, callbacks)


def _train(cfg: DictConfig, say, callbacks: list | None) -> TrainResult | None:
    import lightning as L

    from zoo.methods.base import MethodContext
    from zoo.registry import DATASETS, METHODS
    from zoo.students import create_student, student_start_weights
    from zoo.teachers import prepare_teachers
    from zoo.weights import save_weights

    search = None
    if cfg.get("search") is not None and cfg.student.arch is None:  # the student is the search's winner (DisWOT)
        from zoo.search.run import find_student

        search = find_student(cfg, say, write=False).summary
        cfg.student.arch = search["winner"]
        say(f"searched student: {search['winner']} (by {search['proxy']}, {search['candidates_scored']} candidates, "
            f"{search['seconds']:.1f} s)")
    if cfg.get("stages"):  # a staged run: one fit per stage, in one run folder (zoo.staged)
        from zoo.staged import train_staged

        return train_staged(cfg, say, callbacks)
    if cfg.get("active"):  # an active run: rounds of choose, query the teacher, retrain (zoo.active)
        from zoo.active import train_active

        return train_active(cfg, say, callbacks)
    quiet_lightning()
    started = time.perf_counter()
    method_cls, data_cls = METHODS.get(cfg.method.name), DATASETS.get(cfg.data.name)
    method_cls.check_kind(data_cls.kind, cfg.method.name)  # before any data is read or teacher trained
    method_cls.check_run_shape(False, cfg.method.name)
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
    with stops_explained(f"training interrupted; the last finished epoch is saved in {run_dir}",
                         resume_hint(cfg, run_dir)):
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=False)
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
                      started, trainer.world_size, say, search=search_record(search))


def search_record(summary: dict | None) -> dict:
    """What a run's record keeps of the search that chose its student: all but the per-seed scores."""
    if summary is None:
        return {}
    ranking = [{k: v for k, v in entry.items() if k != "per_seed"} for entry in summary["ranking"]]
    return {**summary, "ranking": ranking}


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
