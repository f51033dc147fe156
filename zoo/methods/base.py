"""DistillModule: what every distillation method shares, whatever the kind of its task.

- A method is built as ``Method(student, teachers, context)``: ``context`` (a ``MethodContext``) tells it the
  task's kind, its method and optim config blocks, the class count or tokenizer, the input shape and the
  teacher-output cache, so it can size its own modules (an adapter, a head) with a dry run (``feature_shapes``).
- A method declares the kinds it trains on (``kinds``); ``zoo train`` refuses any other with one line.
- Teachers are frozen (eval mode, no grad) and held in a plain list, so they are not submodules: they stay out of
  ``state_dict``, out of Lightning checkpoints and out of DDP's gradient sync. The module moves them to its
  device itself.
- A method implements ``losses(batch) -> {name: tensor}`` and, if it weighs them, ``loss_weights()``; the base
  logs each loss and their weighted sum, and counts teacher forward passes (``count_teacher_calls``).
- Optimiser and schedule come from the ``optim`` block of the config.

What one kind adds (accuracy during validation, teacher outputs read from a cache) lives in a subclass per kind
(``zoo.methods.classification``), not here.
"""

import math
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.methods.hooks import FeatureHooks


@dataclass
class MethodContext:
    """What a method is told about its run beyond the student and the teachers."""

    kind: str                           # the task's kind (``zoo.kinds``), declared by its data module
    method: Any                         # the ``method`` config block
    optim: Any                          # the ``optim`` config block
    num_classes: int | None = None      # classes of a classification or detection task; None otherwise
    input_shape: tuple[int, ...] = ()   # one sample's shape (C, H, W); () for texts
    vocabulary: str | None = None       # the tokenizer a text kind's data is read with; None otherwise
    cache: Any = None                   # a TeacherOutputCache where the kind and the inputs allow one

    @classmethod
    def of(cls, datamodule, method: Any, optim: Any, cache: Any = None) -> "MethodContext":
        """The context of training with the ``method`` and ``optim`` blocks on ``datamodule``."""
        return cls(kind=datamodule.kind, method=method, optim=optim, num_classes=datamodule.num_classes,
                   input_shape=tuple(datamodule.input_shape), vocabulary=datamodule.vocabulary, cache=cache)


class DistillModule(L.LightningModule):
    uses_teachers = True  # False for methods that train a student alone (baselines, teacher recipes)
    kinds: tuple[str, ...] = ()  # the task kinds this method trains on
    loss_names: tuple[str, ...] = ()  # the losses a stage of a staged run may weigh (``zoo.staged``); none: any
    active_only = False  # True: trains only in an active run's rounds (``zoo.active``), whose batches bring answers

    def __init__(self, student: nn.Module, teachers: list[nn.Module], context: MethodContext):
        super().__init__()
        self.check_kind(context.kind, context.method.name)
        if self.needs_teachers(context.method) and not teachers:
            raise ConfigError(f"method '{context.method.name}' needs at least one teacher")
        self.context = context
        self.student = student
        self.teachers = list(teachers)  # a list, not nn.ModuleList: see the module docstring
        for teacher in self.teachers:
            teacher.eval().requires_grad_(False)
        self.method_cfg, self.optim_cfg = context.method, context.optim
        self.teacher_calls = {"forward_passes": 0, "samples": 0}
        self.total_teacher_calls = dict(self.teacher_calls)  # summed over ranks at the end of fit
        self.last_losses: dict[str, torch.Tensor] = {}  # the latest step's named losses (training_step)
        self.student_hooks = FeatureHooks(student, list(self.method_cfg.get("student_features") or []))
        self.teacher_hooks = [FeatureHooks(t, list(self.method_cfg.get("teacher_features") or []))
                              for t in self.teachers]

    @classmethod
    def needs_teachers(cls, method_cfg: Any) -> bool:
        """Whether training with ``method_cfg`` needs a teacher: ``uses_teachers``, unless a method's losses say
        otherwise (a stage of a staged run that trains on labels alone)."""
        return cls.uses_teachers

    @classmethod
    def stage_memory(cls, method_cfg: Any, datamodule) -> Any:
        """What a staged run keeps for the method between the stages of one teacher on one data set, passed as the
        context's ``cache`` (ERNIE-Tiny: the teacher's view of each task sample); None by default."""
        return None

    @classmethod
    def student_kwargs(cls, method_cfg: Any) -> dict[str, Any]:
        """Arch settings the method needs its student built with (``zoo.archs.create``), e.g. LELP's S outputs per
        class; none by default."""
        return {}

    @classmethod
    def check_run_shape(cls, active: bool, name: str) -> None:
        """One line when a method made for active runs is asked to train without rounds, or the other way round."""
        if cls.active_only and not active:
            raise ConfigError(f"method '{name}' retrains the student of an active run (its batches carry the "
                              "teacher's answers to chosen points); this task has no active block",
                              "use a task with one, e.g. task=rad_fashion_mnist")
        if active and not cls.active_only:
            raise ConfigError(f"an active run retrains its student with a method made for it, not '{name}'",
                              "set method=active_kd")

    @classmethod
    def check_kind(cls, kind: str, name: str) -> None:
        """One line when a task of ``kind`` asks for this method (registered as ``name``) and it trains others."""
        if kind not in cls.kinds:
            raise ConfigError(f"method '{name}' trains {' or '.join(cls.kinds) or 'no'} students; this task's data "
                              f"is {kind}", "pick a method made for this task's kind")

    # -- what a method provides --------------------------------------------------
    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss_weights(self) -> dict[str, float]:
        return {}

    def batch_size(self, batch: dict[str, Any]) -> int:
        """Samples in a batch, for logging; a method whose batches carry no ``targets`` overrides it."""
        return len(batch["targets"])

    def stage_report(self, datamodule) -> dict[str, Any]:
        """What a staged run writes beside a finished stage's loss curve (its summary's ``diagnostics``, in the record),
        e.g. Hybrid Distill's attention distances; nothing by default."""
        return {}

    def evaluation_context(self) -> dict[str, Any]:
        """What the kind's evaluation needs from the method beyond the student (retrieval: the frozen document
        encoder); nothing by default."""
        return {}

    # -- teachers ----------------------------------------------------------------
    def count_teacher_calls(self, forward_passes: int, samples: int) -> None:
        """Every real teacher forward pass is counted: the record's cost column."""
        self.teacher_calls["forward_passes"] += forward_passes
        self.teacher_calls["samples"] += samples

    def _move_teachers(self) -> None:
        for teacher in self.teachers:
            teacher.to(self.device).eval()

    def on_fit_start(self) -> None:
        self._move_teachers()

    def on_validation_start(self) -> None:
        self._move_teachers()

    @torch.no_grad()
    def feature_shapes(self, batch_size: int = 2) -> tuple[dict[str, tuple[int, ...]], list[dict[str, tuple]]]:
        """A dry run on zeros of the context's input shape: the shapes of the hooked student features and of each
        teacher's hooked features (``method.student_features`` / ``teacher_features``), to size adapters with.
        The models' train/eval modes are left as they were."""
        if not self.context.input_shape:
            raise ConfigError(f"method '{self.method_cfg.name}' sizes its modules from a dry run on images, but "
                              f"this task's inputs ({self.context.kind}) have no fixed shape")
        inputs = torch.zeros(batch_size, *self.context.input_shape)
        shapes = []
        for model, hooks in [(self.student, self.student_hooks), *zip(self.teachers, self.teacher_hooks, strict=True)]:
            was_training = model.training
            model.eval()
            model(inputs)
            model.train(was_training)
            shapes.append({path: tuple(feature.shape[1:]) for path, feature in hooks.outputs.items()})
        return shapes[0], shapes[1:]

    # -- Lightning hooks -----------------------------------------------------------
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.student(inputs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        self.last_losses = {name: value.detach() for name, value in losses.items()}  # for loss curves (zoo.staged)
        weights = self.loss_weights()
        total = sum(weights.get(name, 1.0) * value for name, value in losses.items())
        # self.log costs ~0.5 ms a call on CPU, a sizeable share of a small student's step;
        # call it only on the steps the logger writes (every log_every_n_steps).
        if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            size = self.batch_size(batch)
            if len(losses) > 1:
                for name, value in losses.items():
                    self.log(f"train/{name}", value.detach(), batch_size=size)
            self.log("train/loss", total.detach(), prog_bar=True, batch_size=size)
        return total

    def on_train_end(self) -> None:
        counts = torch.tensor([self.teacher_calls["forward_passes"], self.teacher_calls["samples"]],
                              device=self.device)
        counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        self.total_teacher_calls = {"forward_passes": int(counts[0]), "samples": int(counts[1])}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo_teacher_calls"] = dict(self.teacher_calls)
        # Lightning keeps no random state: without it, dropout after a resume would differ from an unbroken run
        checkpoint["zoo_rng"] = {"torch": torch.get_rng_state(),
                                 "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.teacher_calls.update(checkpoint.get("zoo_teacher_calls", {}))
        rng = checkpoint.get("zoo_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def close(self) -> None:
        """Remove the feature hooks from the student and the teachers: a staged run builds one module per stage
        around the same models."""
        for hooks in [self.student_hooks, *self.teacher_hooks]:
            hooks.remove()

    # -- optimisation --------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Override to add modules of the method's own (projectors, discriminators)."""
        return [{"params": [p for p in self.student.parameters() if p.requires_grad]}]

    def configure_optimizers(self):
        cfg = self.optim_cfg
        groups = self.parameter_groups()
        if cfg.name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                        weight_decay=cfg.weight_decay, nesterov=bool(cfg.get("nesterov", False)))
        elif cfg.name == "adamw":  # betas: torch's (0.9, 0.999) unless optim.betas says otherwise (MAE: 0.9, 0.95)
            optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                          betas=tuple(cfg.get("betas") or (0.9, 0.999)))
        elif cfg.name == "adam":
            optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            raise ConfigError(f"unknown optimizer '{cfg.name}'", "optim.name is one of sgd, adamw, adam")
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, int(self.trainer.max_epochs or 1)))
        factors = self.lr_factors(lr_lambda(cfg, total, per_epoch), len(optimizer.param_groups))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_factors(self, schedule, num_groups: int) -> list:
        """The per-step lr multiplier of each parameter group: the configured schedule for all by default."""
        return [schedule] * num_groups


def lr_lambda(cfg: Any, total_steps: int, steps_per_epoch: int):
    """Per-step multiplier: linear warm-up, then cosine or linear decay to 0, step decay at epoch milestones,
    or constant."""
    warmup = int(cfg.get("warmup_epochs", 0) * steps_per_epoch)
    kind = cfg.get("schedule", "none")
    if kind not in ("none", "cosine", "linear", "step"):
        raise ConfigError(f"unknown schedule '{kind}'", "optim.schedule is one of none, cosine, linear, step")
    milestones = [int(m) * steps_per_epoch for m in cfg.get("milestones", []) or []]
    gamma = float(cfg.get("gamma", 0.1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if kind == "linear":  # the Hugging Face Trainer's default (DiSCo's recipe)
            return max(0.0, 1.0 - (step - warmup) / max(1, total_steps - warmup))
        if kind == "step":
            return gamma ** sum(step >= m for m in milestones)
        return 1.0

    return factor
