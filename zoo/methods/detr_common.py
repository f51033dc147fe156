"""What the DETR methods (``detr_alone``, ``detr_logit_kd``, ``clockdistill``) share; no method of its own.

Batches come from the detection data modules (``zoo.data.detection``): ``inputs`` [B, 3, H, W],
``pixel_mask`` [B, H, W], ``targets`` (a list of HF DETR label dicts, plus ignore regions the
detectors' own loss does not read), ``index``. Models are ``zoo.archs.detr_wrapper`` detectors, which
return a ``DetrOutput`` and, given ``labels``, HF's Hungarian set loss (focal class loss, L1, GIoU,
per decoder layer with ``auxiliary_loss``): that loss is "the student's own DETR loss" of every method.

- One teacher (a detector ensemble has no agreed meaning here); frozen and in eval mode by
  ``DistillModule``. No teacher-output cache: the detection kind has none, as CLoCKDistill's teacher
  outputs depend on the batch's ground truth (GT queries).
- Validation logs the student's own loss (``val/loss``); mAP is computed once at the end of a run by
  the data module (``DetectionDataModule.evaluate``), where it is exact over the whole split.
- ``optim.backbone_lr`` (optional): the backbone's own learning rate, as DETR recipes train the
  ImageNet-initialised backbone 10x slower (1e-5 against 1e-4). It follows the same schedule.
"""

from typing import Any

import torch

from zoo.errors import ConfigError
from zoo.methods.base import DistillModule


class DetrModule(DistillModule):
    uses_teachers = False
    kinds = ("detection",)

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        if len(self.teachers) > 1:
            raise ConfigError(f"method '{context.method.name}' distils one DETR teacher, not {len(self.teachers)}",
                              "give teacher.arch a single name")

    # -- forward passes --------------------------------------------------------------------------------
    def student_forward(self, batch: dict[str, Any], gt_queries=None):
        """The student's DetrOutput, with its own set loss (``.loss``) on the batch's targets."""
        return self.student(batch["inputs"], batch["pixel_mask"], labels=batch["targets"], gt_queries=gt_queries)

    @torch.no_grad()
    def teacher_forward(self, batch: dict[str, Any], gt_queries=None):
        """The frozen teacher's DetrOutput (no loss), counted as one teacher query per image."""
        out = self.teachers[0](batch["inputs"], batch["pixel_mask"], gt_queries=gt_queries)
        self.count_teacher_calls(1, len(batch["targets"]))
        return out

    def forward(self, inputs: torch.Tensor, pixel_mask: torch.Tensor | None = None):
        return self.student(inputs, pixel_mask)

    # -- Lightning hooks --------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        loss = self.student_forward(batch).loss
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(batch["targets"]))

    def parameter_groups(self) -> list[dict[str, Any]]:
        backbone_lr = self.optim_cfg.get("backbone_lr")
        params = [(name, p) for name, p in self.student.named_parameters() if p.requires_grad]
        if backbone_lr is None:
            return [{"params": [p for _, p in params]}]
        backbone = [p for name, p in params if ".backbone." in name]
        rest = [p for name, p in params if ".backbone." not in name]
        return [{"params": rest}, {"params": backbone, "lr": float(backbone_lr)}]

    def extra_group(self, modules) -> list[dict[str, Any]]:
        """A parameter group (at the main lr) for a method's own trainable modules, or none if they are frozen."""
        params = [p for module in modules if module is not None for p in module.parameters() if p.requires_grad]
        return [{"params": params}] if params else []
