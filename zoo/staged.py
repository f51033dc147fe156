"""Staged runs: one ``zoo train`` that fits the same student through a list of stages, each with its own data,
teacher, losses and length (ERNIE-Tiny's GD -> GED -> TAD -> TSD; TinyBERT's two stages; a distil-then-fine-tune).

A task lists its stages under ``stages`` (a config group: ``stages=ernie_tiny``), as data:

    stages:
      - {name: gd, data: general, teacher: pretrained, losses: {latent: 1.0}, epochs: 4}
      - {name: tsd, data: task, teacher: finetuned, losses: {latent: 1.0, soft: 1.0, hard: 1.0}, epochs: 4,
         optim: {lr: 3.0e-5}}

- ``data`` is ``task`` (the run's ``data`` block, on which the student is evaluated) or a name in ``datasets``
  (further data blocks, e.g. ``datasets.general``: general text);
- ``teacher`` is a role in ``teacher.roles`` (each a teacher block: arch, weights, pretrained, recipe, kwargs), a
  list of roles (a stage with several teachers, handed to the method in that order: Hybrid Distill's ``[mim,
  discriminative]``) or null for a stage without one; a role's teacher is built (or trained once by its recipe)
  when a stage first needs it, on the task's data;
- ``losses`` are the method's loss weights for the stage (``<method>.loss_names``); ``optim`` and ``method`` are
  merged over the run's blocks for the stage only (a ``method`` block may name another method for the stage, e.g.
  LLaVA-MoD's preference stage after its mimic stages: ``method: {name: preference_distill}``); ``epochs`` is its
  length;
- ``probe: true`` fits a linear probe of the student's features once the stage is over (``zoo.probe``; settings
  in the task's optional ``probe`` block: ``train_size``, ``iterations``), e.g. of a student distilled without
  labels before it is fine-tuned; the record's ``val/probe_acc`` and ``test/probe_acc`` are the last probe's.

A stage may instead change the student: ``{name: upcycle, transform: {upcycle: {num_experts: 4, top_k: 2}}}`` applies
a transform (``zoo.transforms``: LLaVA-MoD's upcycling of dense FFNs into experts) to the student as the earlier
stages left it, seeded like a fit stage; it trains nothing and has no other key. A rebuild of the finished student
(``zoo.runs.load_run``) applies the run's transforms in order (``zoo.transforms.transformed_student``) before its
weights are read.

Each stage is one Lightning fit with its own optimiser and schedule, seeded by (run seed, stage number), so a
stage's result depends only on the state it starts from. The run folder keeps, per stage, ``stages/<k>-<name>/``:
``checkpoints/last.ckpt`` (rewritten every epoch: a killed run resumes mid-stage, to the same weights), and once the
stage is over ``state.safetensors`` (the student and the method's own modules, e.g. projections, carried into the
next stage) and ``done.json`` (its epochs, steps, wall time, teacher passes and loss curve). A finished stage is
never redone. What the method reports of a finished stage (``DistillModule.stage_report``: Hybrid Distill's
attention distances) is kept in its summary as ``diagnostics``. The record lists the stages with their loss curves
(mean of each loss over windows of ``curve_window`` steps); the shipped student is the student alone.
"""

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from zoo.atomic import atomic_write_text
from zoo.errors import CheckpointError, ConfigError, ZooError, did_you_mean
from zoo.fitting import TrainResult, finish_run, fit_in_folder
from zoo.runs import prepare_run_dir, quiet_lightning, resume_hint
from zoo.transforms import TRANSFORMS, apply_transform, transform_functions
from zoo.weights import save_weights, sha256_file

STAGE_KEYS = {"name", "data", "teacher", "losses", "epochs", "optim", "method", "probe", "transform"}
TRANSFORM_KEYS = {"name", "transform"}
TASK_DATA = "task"
CURVE_WINDOW = 10  # steps per point of a stage's loss curve


class StageLog(L.Callback):
    """A stage's loss curve, the mean of each named loss (``DistillModule.last_losses``) over consecutive windows of
    steps, and its training seconds; kept in the stage's checkpoints, so that a resumed stage's are whole."""

    def __init__(self, window: int = CURVE_WINDOW):
        self.window = window
        self.points: dict[str, list[float]] = {}
        self._sums: dict[str, Any] = {}  # tensors on the training device until a window ends: no sync per step
        self._count = 0
        self._earlier_seconds, self._started = 0.0, time.perf_counter()

    @property
    def seconds(self) -> float:
        """Training seconds of the stage, over every attempt."""
        return self._earlier_seconds + time.perf_counter() - self._started

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        for name, value in module.last_losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + value.double()  # float64, as Python floats summed
        self._count += 1
        if self._count == self.window:
            self._flush()

    def on_train_end(self, trainer, module) -> None:
        if self._count:
            self._flush()

    def _flush(self) -> None:
        for name, total in self._sums.items():
            self.points.setdefault(name, []).append(round(float(total) / self._count, 6))
        self._sums, self._count = {}, 0

    def state_dict(self) -> dict[str, Any]:
        sums = {name: float(total) for name, total in self._sums.items()}
        return {"points": self.points, "sums": sums, "count": self._count, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.points, self._sums, self._count = state["points"], state["sums"], state["count"]
        self._earlier_seconds, self._started = state["seconds"], time.perf_counter()


def check_stages(cfg: DictConfig, loss_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The stages as plain dicts, each checked against the config before any data is read or teacher built, with
    the defaults filled in (``data: task``, ``teacher: null``)."""
    stages = OmegaConf.to_container(cfg.stages, resolve=True)
    datasets = list((cfg.get("datasets") or {}).keys())
    roles = list((cfg.teacher.get("roles") or {}).keys())
    seen = set()
    for k, stage in enumerate(stages, start=1):
        where = f"stages.{k - 1}"
        if not isinstance(stage, dict) or "name" not in stage:
            raise ConfigError(f"{where} is not a mapping with a name", f"a stage has keys {sorted(STAGE_KEYS)}")
        where = f"{where} ({stage['name']})"
        unknown = sorted(set(stage) - STAGE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}", f"a stage has {sorted(STAGE_KEYS)}")
        if stage["name"] in seen:
            raise ConfigError(f"{where}: two stages are named '{stage['name']}'", "give each stage its own name")
        seen.add(stage["name"])
        if "transform" in stage:
            check_transform(stage, where)
            stage.update(data=TASK_DATA, teacher=None, probe=False)  # what the run prepares per stage: nothing
            continue
        stage.setdefault("data", TASK_DATA)
        stage.setdefault("teacher", None)
        data = stage["data"]
        if data != TASK_DATA and data not in datasets:
            raise ConfigError(f"{where}: unknown data '{data}'", did_you_mean(data, [TASK_DATA, *datasets], "data"))
        for teacher in roles_of(stage["teacher"]):
            if teacher not in roles:
                raise ConfigError(f"{where}: unknown teacher role '{teacher}'",
                                  did_you_mean(str(teacher), roles, "teacher roles (teacher.roles)"))
        if not isinstance(stage.setdefault("probe", False), bool):
            raise ConfigError(f"{where}: probe={stage['probe']!r}", "probe is true (a linear probe after the stage) "
                                                                    "or false")
        losses = stage.get("losses") or {}
        method, names = stage_method_name(cfg, stage), loss_names
        if method != cfg.method.name:
            from zoo.registry import METHODS

            names = METHODS.get(method).loss_names
        wrong = sorted(set(losses) - set(names)) if names else []  # none declared: any name
        if not losses or wrong:
            raise ConfigError(f"{where}: losses {losses} " + (f"name unknown loss(es) {', '.join(wrong)}" if wrong
                                                                 else "are empty"),
                              f"{method}'s losses are {', '.join(names)}")
        epochs = stage.get("epochs")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            raise ConfigError(f"{where}: epochs={epochs!r}", "give each stage an integer number of epochs (>= 0)")
    return stages


def roles_of(teacher: str | list | None) -> list[str]:
    """A stage's teacher roles: none, one, or a list of them."""
    if teacher is None:
        return []
    return [str(role) for role in teacher] if isinstance(teacher, list) else [str(teacher)]


def check_transform(stage: dict[str, Any], where: str) -> None:
    """A transform stage names one known transform with a mapping of its settings, and nothing else."""
    extra = sorted(set(stage) - TRANSFORM_KEYS)
    if extra:
        raise ConfigError(f"{where}: a transform stage has no {', '.join(extra)}",
                          "it changes the student and trains nothing: give it only name and transform")
    transform = stage["transform"]
    settings = next(iter(transform.values())) if isinstance(transform, dict) and len(transform) == 1 else None
    if not isinstance(transform, dict) or len(transform) != 1 or not isinstance(settings or {}, dict):
        raise ConfigError(f"{where}: transform={transform!r}", "give one {transform: {settings}}, e.g. "
                                                               "{upcycle: {num_experts: 4, top_k: 2}}")
    name = next(iter(transform))
    if name not in TRANSFORMS:
        raise ConfigError(f"{where}: unknown transform '{name}'", did_you_mean(name, list(TRANSFORMS), "transforms"))
    try:
        transform_functions(name)[1](settings or {})
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}", err.hint) from err


def stage_method_name(cfg: DictConfig, stage: dict[str, Any]) -> str:
    """The method a stage trains with: its own ``method.name``, else the run's."""
    return str((stage.get("method") or {}).get("name", cfg.method.name))


class StagedRun:
    """The parts a staged run shares between its stages: data modules, teachers by role, the student."""

    def __init__(self, cfg: DictConfig, say=print):
        from zoo.registry import DATASETS, METHODS

        self.cfg, self.say = cfg, say
        self.method_cls = METHODS.get(cfg.method.name)
        self.stages = check_stages(cfg, self.method_cls.loss_names)
        self.fits = [stage for stage in self.stages if "transform" not in stage]
        if not self.fits:
            raise ConfigError("every stage is a transform: nothing trains the student", "add a stage with losses")
        self.task_data = DATASETS.get(cfg.data.name)(cfg.data, shuffle_seed=int(cfg.seed))
        for name in dict.fromkeys([cfg.method.name, *(stage_method_name(cfg, stage) for stage in self.fits)]):
            METHODS.get(name).check_kind(self.task_data.kind, name)
            METHODS.get(name).check_run_shape(False, name)
        self._data = {TASK_DATA: self.task_data}
        self._teachers: dict[str, tuple[list, list, dict]] = {}
        self._memories: dict[tuple[str, str, str], Any] = {}

    def method_of(self, stage: dict[str, Any]):
        """The method class a fit stage trains with."""
        from zoo.registry import METHODS

        return METHODS.get(stage_method_name(self.cfg, stage))

    def memory(self, stage: dict[str, Any], method_cfg: DictConfig):
        """What the method keeps of its teacher on one data set between stages (``<method>.stage_memory``; ERNIE-Tiny:
        the teacher's view of each task sample), shared by the stages of that method, teacher and data; None if
        nothing."""
        key = (str(method_cfg.name), str(stage["teacher"]), stage["data"])
        if key not in self._memories:
            has_teacher = stage["teacher"] is not None
            self._memories[key] = self.method_of(stage).stage_memory(method_cfg, self.data(key[2])) if has_teacher \
                else None
        return self._memories[key]

    def data(self, name: str):
        """The data module of ``task`` or of ``datasets.<name>``, read once; it must share the task's vocabulary."""
        if name not in self._data:
            from zoo.registry import DATASETS

            block = self.cfg.datasets[name]
            module = DATASETS.get(block.name)(block, shuffle_seed=int(self.cfg.seed))
            if module.vocabulary != self.task_data.vocabulary:
                raise ConfigError(f"datasets.{name} is read with tokenizer {module.vocabulary}, the task's data with "
                                  f"{self.task_data.vocabulary}", f"set datasets.{name}.tokenizer="
                                                                  f"{self.task_data.vocabulary}")
            self._data[name] = module
        return self._data[name]

    def teachers(self, role: str | list | None) -> tuple[list, list, dict]:
        """(frozen teachers, record entries, test metrics) of a role, prepared once; nothing for no role; for a list
        of roles, their teachers and entries in its order and the last one's metrics."""
        if role is None or isinstance(role, list):
            prepared = [self.teachers(one) for one in roles_of(role)]
            return ([t for p in prepared for t in p[0]], [i for p in prepared for i in p[1]],
                    prepared[-1][2] if prepared else {})
        if role not in self._teachers:
            from zoo.teachers import prepare_teachers

            role_cfg = self.cfg.copy()
            with_defaults = OmegaConf.merge({"weights": None, "pretrained": False, "kwargs": {}, "recipe": None},
                                            self.cfg.teacher.roles[role])
            OmegaConf.set_struct(role_cfg, False)
            role_cfg.teacher = with_defaults
            # Only the last stage's teacher is measured on the task: the record compares the student with it, and
            # an earlier role's may not classify at all (a pretrained encoder with an untrained head).
            measure = role in roles_of(self.fits[-1]["teacher"])
            teachers, infos, metrics = prepare_teachers(role_cfg, self.task_data, self.say, measure=measure)
            for info in infos:
                info.role = role
            self._teachers[role] = (teachers, infos, metrics)
            if not measure:
                self.say(f"teacher role '{role}': {' + '.join(info.name for info in self._teachers[role][1])}")
        return self._teachers[role]


def stage_config(cfg: DictConfig, stage: dict[str, Any], labelled: bool) -> DictConfig:
    """The run's config as one stage trains: its length, its optim and method settings, its losses."""
    stage_cfg = cfg.copy()
    OmegaConf.set_struct(stage_cfg, False)
    stage_cfg.trainer.max_epochs = int(stage["epochs"])
    if not labelled:  # general text has no validation split: nothing to validate on
        stage_cfg.trainer.limit_val_batches = 0
    stage_cfg.optim = OmegaConf.merge(cfg.optim, stage.get("optim") or {})
    own = stage.get("method") or {}
    name = stage_method_name(cfg, stage)  # another method than the run's starts from its own config file's block
    base = cfg.method if name == cfg.method.name else method_option(name)
    stage_cfg.method = OmegaConf.merge(base, own)
    OmegaConf.set_struct(stage_cfg.method, False)
    stage_cfg.method.losses = stage["losses"]
    return stage_cfg


def method_option(name: str) -> DictConfig:
    """The method block of ``tasks/method/<name>.yaml`` (with the blocks it builds on), or just the name."""
    from zoo.paths import data_dir

    path = data_dir("tasks") / "method" / f"{name}.yaml"
    if not path.is_file():
        return OmegaConf.create({"name": name})
    raw = OmegaConf.load(path)
    bases = [method_option(str(base)) for base in raw.pop("defaults", []) if str(base) != "_self_"]
    return OmegaConf.merge(*bases, raw)


def load_carried(module, state: dict[str, torch.Tensor]) -> None:
    """The previous stage's student and method modules into this stage's module: the student strictly, the
    method's own modules where this stage has them too."""
    missing, _ = module.load_state_dict(state, strict=False)
    lost = [key for key in missing if key.startswith("student.")]
    if lost:
        raise ZooError(f"the student carried from the previous stage lacks {len(lost)} weight(s), e.g. {lost[0]}")


def train_staged(cfg: DictConfig, say=print, callbacks: list | None = None) -> TrainResult | None:
    """Run a staged task config end to end (see the module docstring)."""
    from safetensors.torch import load_file, save_file

    from zoo.methods.base import MethodContext
    from zoo.students import create_student, student_start_weights

    quiet_lightning()
    started = time.perf_counter()
    run = StagedRun(cfg, say)
    for stage in run.stages:  # every stage's data and teacher, before the run folder exists
        run.data(stage["data"])
        run.teachers(stage["teacher"])
    student = create_student(cfg, run.task_data, student_start_weights(cfg, run.task_data, say))
    teacher_seconds = time.perf_counter() - started
    run_dir, _ = prepare_run_dir(cfg)
    carried, summaries, module, rank_zero = None, [], None, True
    for k, stage in enumerate(run.stages, start=1):
        folder = run_dir / "stages" / f"{k}-{stage['name']}"
        if (folder / "done.json").is_file():
            summary = read_done(folder)
            if "transform" in stage:  # the student's structure as the stage left it; its weights come next
                L.seed_everything(int(cfg.seed) * 1000 + k, verbose=False)
                apply_transform(student, stage)
            carried, summaries = load_file(folder / "state.safetensors"), [*summaries, summary]
            say(f"stage {k}/{len(run.stages)} {stage['name']}: done earlier, kept")
            continue
        L.seed_everything(int(cfg.seed) * 1000 + k, verbose=False)  # a stage depends on its start state alone
        if "transform" in stage:
            summary, carried = transform_stage(student, stage, carried, summaries)
        else:
            data_name = stage["data"]
            datamodule, (teachers, _, _) = run.data(data_name), run.teachers(stage["teacher"])
            stage_cfg = stage_config(cfg, stage, labelled=data_name == TASK_DATA)
            if module is not None:
                module.close()
            module = run.method_of(stage)(student, teachers, MethodContext.of(
                run.task_data, stage_cfg.method, stage_cfg.optim, run.memory(stage, stage_cfg.method)))
            if carried is not None:
                load_carried(module, carried)
            say(f"stage {k}/{len(run.stages)} {stage['name']}: {stage['epochs']} epoch(s) on {data_name} data, "
                f"teacher {stage['teacher']}, {stage_cfg.method.name} losses {stage['losses']}")
            summary = fit_stage(stage_cfg, folder, module, datamodule, callbacks, stage)
            carried, rank_zero = module.state_dict(), summary is not None
        if not rank_zero:  # another rank of a distributed run: it trains every stage, rank 0 keeps them
            continue
        if "transform" not in stage:
            summary.update(stage_reports(cfg, stage, module, run.task_data, say))
        folder.mkdir(parents=True, exist_ok=True)  # a smoke run (fast_dev_run) writes no checkpoint or log there
        save_file({key: value.detach().contiguous() for key, value in carried.items()},
                  str(folder / "state.safetensors"))
        summary["state_sha256"] = sha256_file(folder / "state.safetensors")  # done.json last: the stage's end
        atomic_write_text(folder / "done.json", json.dumps(summary, indent=2, sort_keys=True))
        summaries.append(summary)
    if not rank_zero:
        return None
    last = run.fits[-1]
    if module is None:  # every stage was done: a run killed while it evaluated
        last_cfg = stage_config(cfg, last, True)
        module = run.method_of(last)(student, run.teachers(last["teacher"])[0],
                                     MethodContext.of(run.task_data, last_cfg.method, cfg.optim))
        load_carried(module, carried)
    student = module.student
    save_weights(student, run_dir / "student.safetensors")
    infos, metrics = [], {}
    for role in dict.fromkeys(role for stage in run.stages for role in roles_of(stage["teacher"])):
        _, role_infos, role_metrics = run.teachers(role)
        infos += role_infos
        metrics = role_metrics  # the last stage's teacher is the one the student is judged against
    queries = {"forward_passes": sum(s["teacher_calls"]["forward_passes"] for s in summaries),
               "samples": sum(s["teacher_calls"]["samples"] for s in summaries)}
    wall = {"teachers": teacher_seconds, "fit": sum(s["wall_s"] for s in summaries),
            **{f"stage:{s['name']}": s["wall_s"] for s in summaries}}
    world_size = summaries[-1].get("world_size", 1)  # the last stage's processes
    probes = [s["probe"] for s in summaries if s.get("probe")]
    return finish_run(cfg, run_dir, student, run.task_data, module, infos, metrics, queries, wall, started,
                      world_size, say, stages=summaries, extra_metrics=probes[-1] if probes else None)


def stage_reports(cfg: DictConfig, stage: dict[str, Any], module, task_data, say=print) -> dict[str, Any]:
    """What a finished stage's summary keeps beside its curve: the linear probe of the student on the task's data
    (``probe: true``) and the method's ``stage_report`` (as ``diagnostics``)."""
    from zoo.evaluation import smoke_limit
    from zoo.probe import ITERATIONS, TRAIN_SIZE, linear_probe

    found: dict[str, Any] = {}
    if stage["probe"]:
        settings = cfg.get("probe") or {}
        probe = linear_probe(module.student, task_data, settings.get("train_size", TRAIN_SIZE),
                             int(settings.get("iterations", ITERATIONS)), limit_batches=smoke_limit(cfg))
        found["probe"] = probe.metrics
        say(f"stage {stage['name']}: linear probe " + "  ".join(f"{k} {v:.4f}" for k, v in probe.metrics.items()))
    report = module.stage_report(task_data)
    if report:
        found["diagnostics"] = report
    return found


def transform_stage(student, stage: dict[str, Any], carried: dict | None, summaries: list[dict]
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A transform stage on ``student`` as the earlier stages left it (``carried``, when they were done in an
    earlier process): its summary and the state handed on (the method modules carried as they were)."""
    started = time.perf_counter()
    if carried is not None:
        prefix = "student."
        student.load_state_dict({key[len(prefix):]: value for key, value in carried.items()
                                 if key.startswith(prefix)})
    apply_transform(student, stage)
    handed_on = {**{key: value for key, value in (carried or {}).items() if not key.startswith("student.")},
                 **{f"student.{key}": value for key, value in student.state_dict().items()}}
    summary = {"name": stage["name"], "transform": stage["transform"], "data": None, "teacher": None, "losses": {},
               "epochs": 0, "steps": 0, "wall_s": round(time.perf_counter() - started, 3),
               "world_size": summaries[-1].get("world_size", 1) if summaries else 1,
               "teacher_calls": {"forward_passes": 0, "samples": 0}, "curve": {}, "curve_window": CURVE_WINDOW}
    return summary, handed_on


def read_done(folder: Path) -> dict[str, Any]:
    """A finished stage's summary, once its handed-on state is checked against the checksum the summary holds."""
    try:
        summary = json.loads((folder / "done.json").read_text())
        expected = summary["state_sha256"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{folder / 'done.json'} is unreadable ({err})",
                              f"delete {folder} to redo that stage") from err
    state = folder / "state.safetensors"
    if not state.is_file() or sha256_file(state) != expected:
        raise CheckpointError(f"{state} is missing or does not match its checksum in done.json",
                              f"nothing was changed; delete {folder} to redo that stage")
    return summary


def fit_stage(stage_cfg: DictConfig, folder: Path, module, datamodule, callbacks: list | None,
              stage: dict[str, Any]) -> dict[str, Any] | None:
    """One stage's fit in its folder, resumed from its last epoch when one is saved; its summary."""
    log = StageLog()
    trainer = fit_in_folder(stage_cfg, folder, module, datamodule, [log, *(callbacks or [])],
                            f"training interrupted in stage {stage['name']}; its last finished epoch is saved in "
                            f"{folder}", resume_hint(stage_cfg, folder.parent.parent))
    if not trainer.is_global_zero:
        return None
    return {"name": stage["name"], "data": stage["data"], "teacher": stage["teacher"],
            "method": OmegaConf.to_container(stage_cfg.method, resolve=True),  # e.g. which preference loss ran
            "losses": stage["losses"], "epochs": int(stage["epochs"]), "steps": int(trainer.global_step),
            "wall_s": round(log.seconds, 3), "world_size": trainer.world_size,
            "teacher_calls": dict(module.total_teacher_calls),  # summed over the ranks at the end of the fit
            "trainable_params": sum(p.numel() for p in module.student.parameters() if p.requires_grad),
            "curve": log.points, "curve_window": log.window}
