"""clockdistill: Lan & Tian, "CLoCKDistill: Consistent Location-and-Context-aware Knowledge Distillation for
DETRs" (arXiv 2502.10683, 2025; WACV 2026). Spec: shared/methods/clockdistill.md. The paper's code was not
available: only the two components (location-aware memory distillation, target-aware consistent logit
distillation) and the DETR families are confirmed; the formulas are the spec's reconstruction, and every
unconfirmed choice below is a ``method.*`` switch. The loss pieces live in ``clockdistill_losses``.

Per batch, with GT boxes b_j / labels c_j, teacher T (frozen, eval) and student S:

1. Memory distillation, weighted by GT locations (``location_weights``; padding tokens get 0, KITTI
   DontCare regions are neither foreground nor background):
       w_i   = 1/A_j for tokens inside GT box j (A_j its area in tokens of that level), β/N_bg otherwise
       L_mem = Σ_i w_i ‖φ(M^S_i) − M^T_i‖² / Σ_i w_i
   M = the encoder output ("memory", all levels, after the projection to d). Teacher and student must
   share the token grid (same ``out_indices``/feature levels and input size); φ is a linear adapter,
   identity-initialised (``adapter``: "auto" = only when the widths differ).
2. Target-aware consistent logit distillation: one query per GT object (reference = the GT box,
   content = a label embedding, position = a sine embedding of the box; ``GTQueryEmbedder``), appended
   to BOTH decoders as an extra group masked from the normal queries, so teacher output j and student
   output j describe the same object (no teacher–student matching):
       L_cls  = Σ_ℓ mean_j Σ_c BCE(σ(s_jc/τ), σ(t_jc/τ))          per-class sigmoid (focal heads)
       L_L1   = Σ_ℓ mean_j ‖b^S_j − b^T_j‖₁,   L_GIoU = Σ_ℓ mean_j (1 − GIoU(b^S_j, b^T_j))
   over the paired decoder layers ℓ (``layers``: "all" pairs the last min(L_S, L_T) layers, or "last").
3. L = L_det(S) + λ_mem · L_mem + λ_logit · (λ_cls L_cls + λ_L1 L_L1 + λ_GIoU L_GIoU).
   At inference the student runs alone: no GT queries, its normal outputs unchanged by them.

Switches (``method.*``, all unconfirmed unless said): ``memory_weight`` λ_mem, ``logit_weight`` λ_logit,
``cls_weight``/``l1_weight``/``giou_weight`` (1/5/2: DETR's matching-cost weights, the spec's default),
``temperature`` τ (1), ``kd_kind`` (bce | kl), ``layers`` (all | last), ``channel_reduction`` (sum | mean
over the d channels of the squared error), ``adapter`` (auto | true | false), ``location.*`` (the keyword
switches of ``location_weights``: mode, fg_rule, area, bg_weight β, bg_normalize, sigma), ``gt_content``
(label | zeros), ``gt_position`` (sine | sine_mlp), ``gt_learnable``, ``gt_attend`` (group | self),
``gt_box_noise`` / ``gt_label_noise`` (DN-style jitter of the GT queries during training, 0 = none).

Choices of ours where the spec is silent:
- One embedder builds the GT queries for both decoders when teacher and student have the same width
  (the spec's setting: d = 256 for both), so both see identical queries. It learns only through the
  student's losses (the teacher runs without grad). The teacher never saw such queries in its own
  training; what it answers on them is its decoder's reading of the features at the GT location.
  With different widths (the mini task's d 128 teacher, d 64 student) the teacher gets its own
  parameter-free queries: zero content (DAB-DETR's own content init; a label embedding it never
  learned would only be noise to it) and the sine embedding of the same GT box at its width.
- The Hungarian-matched KD arm is ``detr_logit_kd``; the student's own loss is HF's (``detr_alone``).
"""

from omegaconf import OmegaConf

from zoo.errors import ConfigError
from zoo.methods.clockdistill_losses import (
    GTQueryEmbedder,
    consistent_logit_kd,
    jitter_gt,
    location_weights,
    make_memory_adapter,
    memory_distill_loss,
    pad_gt,
)
from zoo.methods.detr_common import DetrModule
from zoo.registry import METHODS


@METHODS.register("clockdistill")
class ClockDistill(DetrModule):
    uses_teachers = True

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg, num_classes = self.method_cfg, context.num_classes
        s_dim, t_dim = student.hidden_size, self.teachers[0].hidden_size
        adapter = str(cfg.adapter).lower()
        if adapter not in ("auto", "true", "false"):
            raise ConfigError(f"method.adapter is auto, true or false, not '{cfg.adapter}'")
        if adapter == "false" and s_dim != t_dim:
            raise ConfigError(f"student memory width {s_dim} differs from the teacher's {t_dim}",
                              "set method.adapter=auto to map it through a linear adapter")
        use_adapter = adapter == "true" or (adapter == "auto" and s_dim != t_dim)
        self.adapter = make_memory_adapter(s_dim, t_dim) if use_adapter else None
        embedder = dict(content=str(cfg.gt_content), position=str(cfg.gt_position))
        self.gt_embedder = GTQueryEmbedder(num_classes, s_dim, learnable=bool(cfg.gt_learnable), **embedder)
        self.teacher_gt_embedder = None  # a plain attribute, not a submodule: frozen, never saved
        if t_dim != s_dim:
            self.teacher_gt_embedder = [GTQueryEmbedder(num_classes, t_dim, content="zeros", position="sine",
                                                        learnable=False)]
        self.location = OmegaConf.to_container(cfg.location, resolve=True)
        self.num_classes = num_classes
        self.temperature, self.kind, self.layers = float(cfg.temperature), str(cfg.kd_kind), str(cfg.layers)
        self.channel_reduction, self.gt_attend = str(cfg.channel_reduction), str(cfg.gt_attend)
        self.box_noise, self.label_noise = float(cfg.gt_box_noise), float(cfg.gt_label_noise)
        scale = float(cfg.logit_weight)
        self.weights = {"det": 1.0, "mem": float(cfg.memory_weight), "kd_cls": scale * float(cfg.cls_weight),
                        "kd_l1": scale * float(cfg.l1_weight), "kd_giou": scale * float(cfg.giou_weight)}

    def gt_queries(self, targets):
        """(student queries, teacher queries): the same GT boxes and labels, embedded once per width."""
        boxes, labels, valid = pad_gt(targets, device=self.device)
        if self.training and (self.box_noise > 0 or self.label_noise > 0):
            boxes, labels = jitter_gt(boxes, labels, box_noise=self.box_noise, label_noise=self.label_noise,
                                      num_classes=self.num_classes)
        student = self.gt_embedder(boxes, labels, valid, gt_attend=self.gt_attend)
        if self.teacher_gt_embedder is None:
            return student, student
        teacher_embedder = self.teacher_gt_embedder[0].to(self.device)
        return student, teacher_embedder(boxes, labels, valid, gt_attend=self.gt_attend)

    def losses(self, batch):
        targets = batch["targets"]
        s_queries, t_queries = self.gt_queries(targets)
        student = self.student_forward(batch, gt_queries=s_queries)
        teacher = self.teacher_forward(batch, gt_queries=t_queries)
        if student.memory.shape[1] != teacher.memory.shape[1]:
            raise ConfigError(f"student and teacher memories have {student.memory.shape[1]} and "
                              f"{teacher.memory.shape[1]} tokens: their token grids differ",
                              "give both the same out_indices / num_feature_levels (spec: Pitfalls)")
        weights = location_weights([t["boxes"] for t in targets], student.token_xy, student.token_level,
                                   student.spatial_shapes, student.valid_ratios, student.memory_mask,
                                   ignore_boxes=[t["ignore_boxes"] for t in targets], **self.location)
        memory = memory_distill_loss(student.memory, teacher.memory, weights, adapter=self.adapter,
                                     channel_reduction=self.channel_reduction)
        logit = consistent_logit_kd(student.gt_logits, student.gt_boxes, teacher.gt_logits, teacher.gt_boxes,
                                    student.gt_valid, temperature=self.temperature, kind=self.kind,
                                    layers=self.layers)
        return {"det": student.loss, "mem": memory, **logit}

    def loss_weights(self):
        return self.weights

    def parameter_groups(self):
        return [*super().parameter_groups(), *self.extra_group([self.adapter, self.gt_embedder])]
