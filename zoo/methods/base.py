"""DistillModule: what every distillation method shares.

- Teachers are frozen (eval mode, no grad) and held in a plain list, so they
  are not submodules: they stay out of ``state_dict``, out of Lightning
  checkpoints and out of DDP's gradient sync. The module moves them to its
  device itself.
- A method implements ``losses(batch) -> {name: tensor}`` and, if it weighs
  them, ``loss_weights()``; the base logs each loss and their weighted sum.
- ``teacher_outputs(batch)`` returns the teachers' logits (and hooked features)
  batch-first as [B, K, ...] for K teachers, read from the teacher-output cache
  where it can and counting every real teacher forward pass.
- Optimiser and schedule come from the ``optim`` block of the config.
"""

import math
from typing import Any

import lightning as L
import torch
import torchmetrics
from torch import nn

from zoo.errors import ConfigError
from zoo.methods.hooks import FeatureHooks
from zoo.teacher_cache import TeacherOutputCache


class DistillModule(L.LightningModule):
    uses_teachers = True  # False for the no-distillation baseline
    modality = "image_classification"  # what batches it trains on: picks the smoke-test task in tests

    def __init__(self, student: nn.Module, teachers: list[nn.Module], method_cfg: Any, optim_cfg: Any,
                 num_classes: int, cache: TeacherOutputCache | None = None):
        super().__init__()
        if self.uses_teachers and not teachers:
            raise ConfigError(f"method '{method_cfg.name}' needs at least one teacher")
        self.student = student
        self.teachers = list(teachers)  # a list, not nn.ModuleList: see the module docstring
        for teacher in self.teachers:
            teacher.eval().requires_grad_(False)
        self.method_cfg, self.optim_cfg = method_cfg, optim_cfg
        self.cache = cache
        self.teacher_calls = {"forward_passes": 0, "samples": 0}
        self.total_teacher_calls = dict(self.teacher_calls)  # summed over ranks at the end of fit
        self.student_hooks = FeatureHooks(student, list(method_cfg.get("student_features") or []))
        self.teacher_hooks = [FeatureHooks(t, list(method_cfg.get("teacher_features") or []))
                              for t in self.teachers]
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=num_classes, average="micro")

    # -- what a method provides --------------------------------------------------
    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss_weights(self) -> dict[str, float]:
        return {}

    def batch_size(self, batch: dict[str, torch.Tensor]) -> int:
        """Samples in a batch, for logging; a method whose batches carry no ``targets`` overrides it."""
        return len(batch["targets"])

    # -- teachers ----------------------------------------------------------------
    def _move_teachers(self) -> None:
        for teacher in self.teachers:
            teacher.to(self.device).eval()

    def on_fit_start(self) -> None:
        self._move_teachers()

    def on_validation_start(self) -> None:
        self._move_teachers()

    @torch.no_grad()
    def run_teachers(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs: dict[str, list[torch.Tensor]] = {"logits": []}
        for teacher, hooks in zip(self.teachers, self.teacher_hooks, strict=True):
            outputs["logits"].append(teacher(inputs))
            for path, feature in hooks.outputs.items():
                outputs.setdefault(path, []).append(feature)
        self.teacher_calls["forward_passes"] += len(self.teachers)
        self.teacher_calls["samples"] += len(inputs) * len(self.teachers)
        return {name: torch.stack(values, dim=1).float() for name, values in outputs.items()}

    def teacher_outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """[B, K, ...] teacher outputs for a training batch; cached when inputs are deterministic.

        A batch from a soft-label store (random crops, ``zoo.soft_label_store``) carries the
        ensemble's probabilities instead; they are served as one teacher's logits log p_T.
        """
        if "soft_labels" in batch:
            return {"logits": batch["soft_labels"].clamp_min(1e-12).log().unsqueeze(1)}
        if self.cache is not None:
            stored = self.cache.lookup(batch["index"])
            if stored is not None:
                return {name: value.to(self.device, non_blocking=True) for name, value in stored.items()}
        outputs = self.run_teachers(batch["inputs"])
        if self.cache is not None:
            self.cache.store(batch["index"], outputs)
        return outputs

    # -- Lightning hooks -----------------------------------------------------------
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.student(inputs)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
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

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.val_acc.update(self.student(batch["inputs"]), batch["targets"])
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(batch["targets"]))

    def on_train_epoch_end(self) -> None:
        if self.cache is not None:
            self.cache.flush()

    def on_train_end(self) -> None:
        counts = torch.tensor([self.teacher_calls["forward_passes"], self.teacher_calls["samples"]],
                              device=self.device)
        counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        self.total_teacher_calls = {"forward_passes": int(counts[0]), "samples": int(counts[1])}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo_teacher_calls"] = dict(self.teacher_calls)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.teacher_calls.update(checkpoint.get("zoo_teacher_calls", {}))

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
        elif cfg.name == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
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
