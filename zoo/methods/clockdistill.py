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
   identity-initialised (``adapter``: "auto" = only when the widths differ). ``location.mode: uniform``
   sets w_i = 1 on every real token: memory distillation without GT weighting (the spec's arm (b)).
2. Target-aware consistent logit distillation: one query per GT object, appended to BOTH decoders as an
   extra group masked from the normal queries, so teacher output j and student output j describe the same
   object (no teacher–student matching). The group is built once (``GTQueryBuilder``): content = one label
   embedding of c_j, reference = the 4-d GT box b_j, position = a sine embedding of b_j, at a source width
   (``gt_width``, default the teacher's); a learned linear projection maps content and position into the
   student's width when it differs (and a frozen one into the teacher's, if the source width is not the
   teacher's). Both decoders therefore read the same label embedding and the same box tensors at any pair
   of widths (kitti_mini: teacher 128, student 64).
       L_cls  = Σ_(i,t(i)) mean_j Σ_c BCE(σ(s^i_jc/τ), σ(t^t(i)_jc/τ))     per-class sigmoid (focal heads)
       L_L1   = Σ_(i,t(i)) mean_j ‖b^S,i_j − b^T,t(i)_j‖₁,   L_GIoU = Σ_(i,t(i)) mean_j (1 − GIoU(·, ·))
   over every student decoder layer i, paired with teacher layer t(i) = max(0, round_half_up((i+1)·L_T/L_S) − 1)
   (``layers: proportional``; ``layer_pairs``).
3. L = L_det(S) + λ_mem · L_mem + λ_logit · (λ_cls L_cls + λ_L1 L_L1 + λ_GIoU L_GIoU).
   At inference the student runs alone: no GT queries, its normal outputs unchanged by them.
   A term with weight 0 is not computed: ``logit_weight: 0`` decodes no GT queries at all (arms (b), (c)).

Scale choices (ours; the spec leaves the weights open): the logit terms average over the batch's real GT
queries where the spec sums over them (a sum scales with the batch's object count); the memory term averages
the squared error over the d channels (``channel_reduction: mean``; the spec's ‖·‖² sums them), which divides
it by d, and ``memory_weight`` 15 is set by the spec's rule L_mem ≈ L_det at init on the mini models.

Switches (``method.*``, all unconfirmed unless said): ``memory_weight`` λ_mem, ``logit_weight`` λ_logit,
``cls_weight``/``l1_weight``/``giou_weight`` (1/5/2: DETR's matching-cost weights, the spec's default),
``temperature`` τ (1), ``kd_kind`` (bce | kl), ``layers`` (proportional | tail | last; "all" = tail, the earlier
reading: the last min(L_S, L_T) layers of each), ``channel_reduction`` (sum | mean over the d channels of the
squared error), ``adapter`` (auto | true | false), ``location.*`` (the keyword switches of ``location_weights``:
mode (inverse_area | gaussian | uniform), fg_rule, area, bg_weight β, bg_normalize, sigma), ``gt_content``
(label | zeros), ``gt_position`` (sine | sine_mlp), ``gt_learnable``, ``gt_attend`` (group | self),
``gt_box_noise`` / ``gt_label_noise`` (DN-style jitter of the GT queries during training, 0 = none),
``gt_shared`` (true: one group for both decoders; false: the earlier reading, where with different widths the
teacher decoded its own zero-content queries), ``gt_width`` (teacher | student | a width: where the group is
built), ``gt_reference`` (box: the 4-d GT box on every detector, the spec; center: its centre on Deformable DETR;
native: what the first decoder layer was trained with, the centre on single-stage Deformable DETR, the earlier
reading).

Choices of ours where the spec is silent:
- The label embedding (and the student's projection) learn only through the student's losses (the teacher runs
  without grad). The teacher never saw such queries in its own training; what it answers on them is its
  decoder's reading of the features at the GT location.
- 4-d references on single-stage Deformable DETR: its first decoder layer was trained on 2-d centres, whose box
  head predicts w, h outright, while with a 4-d reference HF (as the original code) adds logit(w, h) of the
  reference. Both decoders read the GT box the same way, so their outputs still correspond one to one; the
  teacher's first-layer w, h are then a function of the GT size rather than a trained estimate.
  Later layers are trained on 4-d references (box refinement) in both readings.
- The Hungarian-matched KD arm is ``detr_logit_kd``; the student's own loss is HF's (``detr_alone``).
"""

from omegaconf import OmegaConf

from zoo.errors import ConfigError
from zoo.methods.clockdistill_losses import (
    LAYER_PAIRINGS,
    LOCATION_MODES,
    GTQueryBuilder,
    consistent_logit_kd,
    jitter_gt,
    location_weights,
    make_memory_adapter,
    memory_distill_loss,
    pad_gt,
)
from zoo.methods.detr_common import DetrModule
from zoo.registry import METHODS

# gt_reference -> GTQueries.center_reference (None: what the detector's first decoder layer was trained with)
REFERENCES = {"box": False, "center": True, "native": None}


def source_width(value, student_dim: int, teacher_dim: int) -> int:
    """The width the GT query group is built at (``method.gt_width``)."""
    text = str(value).lower()
    if text in ("teacher", "student"):
        return teacher_dim if text == "teacher" else student_dim
    if not text.isdigit() or int(text) < 8 or int(text) % 8:
        raise ConfigError(f"method.gt_width is teacher, student or a multiple of 8, not '{value}'",
                          "the sine embedding of a box needs a width divisible by 8")
    return int(text)


def check_choice(key: str, value: str, choices) -> str:
    if value not in choices:
        raise ConfigError(f"method.{key} is one of {', '.join(choices)}, not '{value}'")
    return value


@METHODS.register("clockdistill")
class ClockDistill(DetrModule):
    uses_teachers = True

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg, num_classes = self.method_cfg, context.num_classes
        s_dim, t_dim = student.hidden_size, self.teachers[0].hidden_size
        scale = float(cfg.logit_weight)
        self.weights = {"det": 1.0, "mem": float(cfg.memory_weight), "kd_cls": scale * float(cfg.cls_weight),
                        "kd_l1": scale * float(cfg.l1_weight), "kd_giou": scale * float(cfg.giou_weight)}
        self.use_memory = self.weights["mem"] != 0
        self.use_logit = any(self.weights[k] != 0 for k in ("kd_cls", "kd_l1", "kd_giou"))
        if not (self.use_memory or self.use_logit):
            raise ConfigError("clockdistill with memory_weight and logit_weight 0 distils nothing",
                              "train the student alone with method=detr_alone")
        self.adapter = self.gt_builder = None
        if self.use_memory:
            adapter = check_choice("adapter", str(cfg.adapter).lower(), ("auto", "true", "false"))
            if adapter == "false" and s_dim != t_dim:
                raise ConfigError(f"student memory width {s_dim} differs from the teacher's {t_dim}",
                                  "set method.adapter=auto to map it through a linear adapter")
            if adapter == "true" or (adapter == "auto" and s_dim != t_dim):
                self.adapter = make_memory_adapter(s_dim, t_dim)
        if self.use_logit:
            source = source_width(cfg.gt_width, s_dim, t_dim)
            self.gt_builder = GTQueryBuilder(num_classes, s_dim, t_dim, source_dim=source, content=str(cfg.gt_content),
                                             position=str(cfg.gt_position), learnable=bool(cfg.gt_learnable),
                                             shared=bool(cfg.gt_shared))
        self.location = OmegaConf.to_container(cfg.location, resolve=True)
        check_choice("location.mode", str(self.location.get("mode", "inverse_area")), LOCATION_MODES)
        self.num_classes = num_classes
        self.temperature, self.kind = float(cfg.temperature), str(cfg.kd_kind)
        self.layers = check_choice("layers", str(cfg.layers), LAYER_PAIRINGS)
        self.center_reference = REFERENCES[check_choice("gt_reference", str(cfg.gt_reference), tuple(REFERENCES))]
        self.channel_reduction, self.gt_attend = str(cfg.channel_reduction), str(cfg.gt_attend)
        self.box_noise, self.label_noise = float(cfg.gt_box_noise), float(cfg.gt_label_noise)

    def gt_queries(self, targets):
        """(student queries, teacher queries): one group from the same GT boxes and labels (``GTQueryBuilder``)."""
        boxes, labels, valid = pad_gt(targets, device=self.device)
        if self.training and (self.box_noise > 0 or self.label_noise > 0):
            boxes, labels = jitter_gt(boxes, labels, box_noise=self.box_noise, label_noise=self.label_noise,
                                      num_classes=self.num_classes)
        return self.gt_builder(boxes, labels, valid, gt_attend=self.gt_attend, center_reference=self.center_reference)

    def losses(self, batch):
        targets = batch["targets"]
        s_queries, t_queries = self.gt_queries(targets) if self.use_logit else (None, None)
        student = self.student_forward(batch, gt_queries=s_queries)
        teacher = self.teacher_forward(batch, gt_queries=t_queries)
        losses = {"det": student.loss}
        if self.use_memory:
            if student.memory.shape[1] != teacher.memory.shape[1]:
                raise ConfigError(f"student and teacher memories have {student.memory.shape[1]} and "
                                  f"{teacher.memory.shape[1]} tokens: their token grids differ",
                                  "give both the same out_indices / num_feature_levels (spec: Pitfalls)")
            weights = location_weights([t["boxes"] for t in targets], student.token_xy, student.token_level,
                                       student.spatial_shapes, student.valid_ratios, student.memory_mask,
                                       ignore_boxes=[t["ignore_boxes"] for t in targets], **self.location)
            losses["mem"] = memory_distill_loss(student.memory, teacher.memory, weights, adapter=self.adapter,
                                                channel_reduction=self.channel_reduction)
        if self.use_logit:
            losses.update(consistent_logit_kd(student.gt_logits, student.gt_boxes, teacher.gt_logits,
                                              teacher.gt_boxes, student.gt_valid, temperature=self.temperature,
                                              kind=self.kind, layers=self.layers))
        return losses

    def loss_weights(self):
        return self.weights

    def parameter_groups(self):
        return [*super().parameter_groups(), *self.extra_group([self.adapter, self.gt_builder])]
