"""ClassificationModule: the base of methods whose students are classifiers (``kd``, ``meal_v2``, ``ce``, ...).

Beyond ``DistillModule`` it adds what the classification kind allows:

- validation accuracy (``val/acc``) over the context's classes;
- ``teacher_outputs(batch)``: the teachers' logits (and hooked features) batch-first as [B, K, ...] for K
  teachers, read from the teacher-output cache where the run has one (deterministic inputs: the cache is keyed by
  the sample's ``index``) and counting every real teacher forward pass;
- a batch from the soft-label store (random crops, ``zoo.soft_label_store``) carries the ensemble's probabilities
  instead, served as one teacher's logits log p_T.
"""

from typing import Any

import torch
import torchmetrics
from torch import nn

from zoo.errors import ConfigError
from zoo.methods.base import DistillModule, MethodContext


class ClassificationModule(DistillModule):
    kinds = ("image_classification", "text_classification")

    def __init__(self, student: nn.Module, teachers: list[nn.Module], context: MethodContext):
        super().__init__(student, teachers, context)
        if not context.num_classes:
            raise ConfigError(f"method '{context.method.name}' needs the task's classes, and this data has none")
        self.cache = context.cache
        self.val_acc = torchmetrics.classification.MulticlassAccuracy(num_classes=context.num_classes,
                                                                      average="micro")

    @torch.no_grad()
    def run_teachers(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs: dict[str, list[torch.Tensor]] = {"logits": []}
        for teacher, hooks in zip(self.teachers, self.teacher_hooks, strict=True):
            outputs["logits"].append(teacher(inputs))
            for path, feature in hooks.outputs.items():
                outputs.setdefault(path, []).append(feature)
        self.count_teacher_calls(len(self.teachers), len(inputs) * len(self.teachers))
        return {name: torch.stack(values, dim=1).float() for name, values in outputs.items()}

    def teacher_outputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """[B, K, ...] teacher outputs for a training batch; cached when inputs are deterministic."""
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

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.val_acc.update(self.student(batch["inputs"]), batch["targets"])
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(batch["targets"]))

    def on_train_epoch_end(self) -> None:
        if self.cache is not None:
            self.cache.flush()
