"""CLoCKDistill loss pieces (no Lightning): Lan & Tian, "CLoCKDistill: Consistent Location-and-Context-aware
Knowledge Distillation for DETRs" (arXiv 2502.10683, 2025; WACV 2026). Code (github.com/lanqz7766/CLoCKDistill)
was not available here: only the two components and the three DETR families are confirmed; every formula
below is the reconstruction in ``shared/methods/clockdistill.md`` and every unconfirmed choice is a parameter.

Notation: memory M ∈ R^{B×N×d} (encoder output, all levels), token i at level l(i) with centre (x_i, y_i)
normalised to the real image; GT boxes b_j = (cx, cy, w, h) normalised the same way, labels c_j.

1. Location weights (``location_weights``), per image and feature level:
       fg_i   = max_{j: token i in box j} 1 / A_{j,l(i)}           A = box area in tokens of level l(i)
       bg_i   = β / N_bg,l  (``bg_normalize``; FGD-style, the whole background weighs like one object)  or β
       w_i    = fg_i for foreground tokens, bg_i for the rest, 0 for padding tokens (and ignore regions)
   Switches (all unconfirmed): ``fg_rule`` "center" (token centre inside the box: the spec's wording) or
   "overlap" (token cell overlaps the box, FGD's floor/ceil, so every box gets a token); ``area`` "count"
   (tokens actually marked, so each object sums to 1 per level) or "box" (w·h in token units);
   ``mode`` "gaussian": fg_i = max_j exp(-½[((x_i-cx_j)/σw_j)² + ((y_i-cy_j)/σh_j)²]) / A_j (the spec's
   equally plausible heat-map reading), bg tokens take max(fg_i, bg_i); ``mode`` "uniform": w_i = 1 on every
   real token whatever the GT (plain memory distillation, the spec's ablation arm without GT weighting).
2. Memory distillation (``memory_distill_loss``), φ an optional linear adapter on the student:
       L_mem = Σ_{b,i} w_bi ‖φ(M^S_bi) − M^T_bi‖² / Σ_{b,i} w_bi
   (squared error summed over channels, or averaged with ``channel_reduction="mean"``).
3. Target-aware queries (``pad_gt``, ``jitter_gt``, ``GTQueryEmbedder``, ``GTQueryBuilder``): one query per GT
   object, reference = the GT box (optionally DN-style noise), content = a label embedding (learned, as
   DN-DETR/DINO; or zeros, DAB-DETR's own content init), position = a sine embedding of the box (parameter-free,
   or + MLP). Teacher and student decode the same queries as an extra group, masked from the normal queries
   (``decoder_attention_mask``, defined in ``zoo.archs.detr_wrapper`` and re-exported here). Decoders of
   different widths get them from one source: the group is embedded once, at a source width, and a linear
   ``QueryProjection`` maps its content and position into each decoder's width (none where the widths match);
   the boxes, validity and mask are the same tensors on both sides.
4. Consistent logit distillation on the GT queries (``consistent_logit_kd``), summed over paired decoder layers
   ℓ = (i, t(i)) (``layer_pairs``), averaged over real GT queries j, per-class sigmoid (focal heads) at τ:
       L_cls = Σ_ℓ mean_j Σ_c BCE(σ(s_jc/τ), σ(t_jc/τ))          (``kind="kl"`` subtracts the target entropy)
       L_L1  = Σ_ℓ mean_j ‖b^S_j − b^T_j‖₁,   L_GIoU = Σ_ℓ mean_j (1 − GIoU(b^S_j, b^T_j))
   Spec defaults τ = 1, λ_cls = 1, λ_L1 = 5, λ_GIoU = 2 (DETR's matching-cost weights; unconfirmed). The spec
   sums over j; the mean over the batch's real GT queries is our scale choice (a sum would multiply every
   logit term by the batch's object count, which varies from batch to batch).
5. Ablation arm (``hungarian_kd_loss``): no GT queries; student and teacher predictions are each matched to the
   GT with the Hungarian matcher (HF's Deformable DETR matcher: focal class cost, L1, GIoU), and the same
   three terms are applied to the student/teacher pair matched to each GT object.

Teacher tensors are always detached. Choices of ours where the spec is silent: normalisation over the whole
batch (not per image); ``ignore_boxes`` (KITTI DontCare) get weight 0 unless foreground.
"""

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, generalized_box_iou_loss

from zoo.archs.detr_wrapper import GTQueries, decoder_attention_mask

__all__ = [
    "GTQueries", "GTQueryBuilder", "GTQueryEmbedder", "QueryProjection", "box_kd_loss", "box_sine_embedding",
    "consistent_logit_kd", "decoder_attention_mask", "hungarian_kd_loss", "jitter_gt", "layer_pairs",
    "location_weights", "make_memory_adapter", "memory_distill_loss", "pad_gt", "pair_layers", "sigmoid_kd_loss",
]


# -- 1. location weights -------------------------------------------------------------------------------------
LOCATION_MODES = ("inverse_area", "gaussian", "uniform")


def _inside(xy: torch.Tensor, boxes: torch.Tensor, half: torch.Tensor, rule: str) -> torch.Tensor:
    """[N, n] token i marked by box j: centre inside ("center") or cell overlapping ("overlap")."""
    dx = (xy[:, None, 0] - boxes[None, :, 0]).abs()
    dy = (xy[:, None, 1] - boxes[None, :, 1]).abs()
    if rule == "center":
        return (dx <= boxes[None, :, 2] / 2) & (dy <= boxes[None, :, 3] / 2)
    return (dx < boxes[None, :, 2] / 2 + half[:, None, 0]) & (dy < boxes[None, :, 3] / 2 + half[:, None, 1])


def location_weights(boxes: list[torch.Tensor], token_xy: torch.Tensor, token_level: torch.Tensor,
                     spatial_shapes: torch.Tensor, valid_ratios: torch.Tensor, memory_mask: torch.Tensor, *,
                     mode: str = "inverse_area", fg_rule: str = "center", area: str = "count",
                     bg_weight: float = 1.0, bg_normalize: bool = True, sigma: float = 0.25,
                     ignore_boxes: list[torch.Tensor] | None = None) -> torch.Tensor:
    """[B, N] weight of every memory token (formulas in the module docstring, item 1); padding tokens get 0.

    boxes: per image [n, 4] normalised cxcywh (``[t["boxes"] for t in targets]``); token_xy [B, N, 2],
    token_level [N], spatial_shapes [levels, 2] (H, W), valid_ratios [B, levels, 2] (w, h) and memory_mask
    [B, N] (True = real) are what the detector wrappers return.
    """
    if mode not in LOCATION_MODES or fg_rule not in ("center", "overlap") or area not in ("count", "box"):
        raise ValueError(f"bad switch: mode={mode!r}, fg_rule={fg_rule!r}, area={area!r}")
    if mode == "uniform":  # no GT weighting: every real token counts once (ignore regions too), padding not at all
        return memory_mask.to(token_xy.dtype)
    num_levels = spatial_shapes.shape[0]
    shapes = spatial_shapes[token_level].to(token_xy.dtype)  # [N, 2] (H, W)
    out = torch.zeros(memory_mask.shape, dtype=token_xy.dtype, device=token_xy.device)
    for b, image_boxes in enumerate(boxes):
        xy, real = token_xy[b], memory_mask[b].bool()
        ratios = valid_ratios[b, token_level]  # [N, 2] (w, h)
        per_unit = torch.stack([shapes[:, 1] * ratios[:, 0], shapes[:, 0] * ratios[:, 1]], -1)  # tokens per image
        half = 0.5 / per_unit  # half a token cell, in image units
        fg = torch.zeros_like(real, dtype=xy.dtype)
        is_fg = torch.zeros_like(real)
        image_boxes = image_boxes.to(xy).reshape(-1, 4)
        if len(image_boxes):
            inside = _inside(xy, image_boxes, half, fg_rule) & real[:, None]  # [N, n]
            if area == "count":
                count = torch.zeros(num_levels, len(image_boxes), dtype=xy.dtype, device=xy.device)
                box_area = count.index_add_(0, token_level, inside.to(xy.dtype))[token_level]
            else:
                box_area = (image_boxes[None, :, 2] * per_unit[:, None, 0]) * (image_boxes[None, :, 3]
                                                                               * per_unit[:, None, 1])
            box_area = box_area.clamp(min=1.0)
            is_fg = inside.any(1)
            if mode == "inverse_area":
                fg = torch.where(inside, 1.0 / box_area, torch.zeros_like(box_area)).amax(1)
            else:
                sx = (sigma * image_boxes[None, :, 2]).clamp(min=1e-6)
                sy = (sigma * image_boxes[None, :, 3]).clamp(min=1e-6)
                dx, dy = xy[:, None, 0] - image_boxes[None, :, 0], xy[:, None, 1] - image_boxes[None, :, 1]
                fg = (torch.exp(-0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2)) / box_area).amax(1) * real
        background = real & ~is_fg
        if ignore_boxes is not None and len(ignore_boxes[b]):
            ignored = _inside(xy, ignore_boxes[b].to(xy).reshape(-1, 4), half, fg_rule).any(1)
            background &= ~ignored
        if bg_normalize:
            per_level = torch.zeros(num_levels, dtype=xy.dtype, device=xy.device)
            per_level.index_add_(0, token_level, background.to(xy.dtype))
            bg = bg_weight / per_level[token_level].clamp(min=1.0)
        else:
            bg = torch.full_like(fg, bg_weight)
        out[b] = torch.where(is_fg, fg, torch.where(background, torch.maximum(fg, bg), torch.zeros_like(fg)))
    return out


# -- 2. memory distillation --------------------------------------------------------------------------------
def make_memory_adapter(student_dim: int, teacher_dim: int, identity_init: bool = True) -> nn.Linear:
    """φ: a linear map from the student's memory width to the teacher's (identity at start when widths match)."""
    adapter = nn.Linear(student_dim, teacher_dim)
    if identity_init and student_dim == teacher_dim:
        with torch.no_grad():
            adapter.weight.copy_(torch.eye(student_dim))
            adapter.bias.zero_()
    return adapter


def memory_distill_loss(student_memory: torch.Tensor, teacher_memory: torch.Tensor, weights: torch.Tensor, *,
                        adapter: nn.Module | None = None, channel_reduction: str = "sum") -> torch.Tensor:
    """L_mem = Σ w_i ‖φ(M^S_i) − M^T_i‖² / Σ w_i over all tokens of the batch ([B, N, d] memories, [B, N] weights).

    Tokens with weight 0 (padding) contribute nothing; all-zero weights give 0.
    """
    student = adapter(student_memory) if adapter is not None else student_memory
    error = (student - teacher_memory.detach()).pow(2)
    error = error.sum(-1) if channel_reduction == "sum" else error.mean(-1)
    weights = weights.to(error.dtype)
    return (weights * error).sum() / weights.sum().clamp(min=torch.finfo(error.dtype).tiny)


# -- 3. target-aware (GT) queries ----------------------------------------------------------------------------
def pad_gt(targets: list[dict[str, torch.Tensor]], device: torch.device | None = None):
    """(boxes [B, G, 4], labels [B, G], valid [B, G]) padded to the largest GT count G of the batch.

    Padding slots hold the box (0.5, 0.5, 0.5, 0.5) and label 0; ``valid`` marks the real ones.
    """
    device = device or (targets[0]["boxes"].device if targets else None)
    size = max((len(t["boxes"]) for t in targets), default=0)
    boxes = torch.full((len(targets), size, 4), 0.5, device=device)
    labels = torch.zeros(len(targets), size, dtype=torch.long, device=device)
    valid = torch.zeros(len(targets), size, dtype=torch.bool, device=device)
    for b, target in enumerate(targets):
        n = len(target["boxes"])
        boxes[b, :n] = target["boxes"].to(device, torch.float32)
        labels[b, :n] = target["class_labels"].to(device)
        valid[b, :n] = True
    return boxes, labels, valid


def jitter_gt(boxes: torch.Tensor, labels: torch.Tensor, *, box_noise: float = 0.0, label_noise: float = 0.0,
              num_classes: int | None = None, generator: torch.Generator | None = None):
    """DN-DETR-style noise (unconfirmed whether CLoCKDistill uses any; 0 = none): centre moved by up to
    ``box_noise``·(w/2, h/2), width/height scaled by 1 ± ``box_noise``; each label replaced with probability
    ``label_noise`` by a uniform random class. Boxes stay inside [0, 1]."""
    if box_noise > 0:
        rand = torch.rand(boxes.shape, generator=generator, device=boxes.device) * 2 - 1
        centre = boxes[..., :2] + rand[..., :2] * box_noise * boxes[..., 2:] / 2
        size = boxes[..., 2:] * (1 + rand[..., 2:] * box_noise)
        boxes = torch.cat([centre.clamp(0, 1), size.clamp(1e-4, 1)], -1)
    if label_noise > 0:
        if num_classes is None:
            raise ValueError("label_noise needs num_classes")
        flip = torch.rand(labels.shape, generator=generator, device=labels.device) < label_noise
        random = torch.randint(0, num_classes, labels.shape, generator=generator, device=labels.device)
        labels = torch.where(flip, random, labels)
    return boxes, labels


def box_sine_embedding(boxes: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """[..., 4] boxes in [0, 1] -> [..., dim]: dim/4 sine/cosine features per coordinate (the DAB/DINO position
    encoding of an anchor, scale 2π). ``dim`` must be a multiple of 8."""
    if dim % 8:
        raise ValueError(f"box_sine_embedding needs a dim divisible by 8, not {dim}")
    feats = dim // 4
    dim_t = temperature ** (2 * torch.div(torch.arange(feats, device=boxes.device), 2, rounding_mode="floor")
                            / feats)
    pos = boxes[..., None].float() * (2 * math.pi) / dim_t  # [..., 4, feats]
    pos = torch.stack([pos[..., 0::2].sin(), pos[..., 1::2].cos()], -1).flatten(-2)
    return pos.flatten(-2).to(boxes.dtype)


class GTQueryEmbedder(nn.Module):
    """Builds ``GTQueries`` from padded GT boxes/labels (spec step 3; every choice unconfirmed).

    content:  "label" = an embedding of the class (DN-DETR/DINO), "zeros" = no content (DAB-DETR's own init).
    position: "sine" = box_sine_embedding(box, d), parameter-free; "sine_mlp" = sine(box, 2d) -> Linear -> ReLU
              -> Linear (like DAB's ref_point_head); "none" (DAB-DETR derives the position from the anchor).
    learnable: False freezes the embedder (both detectors then see fixed queries). When it trains, it learns
              only through the student (the teacher runs without grad), so it cannot steer the targets.
    ``GTQueryBuilder`` serves one group to teacher and student, at equal or different widths.
    """

    def __init__(self, num_classes: int, hidden_size: int, *, content: str = "label", position: str = "sine",
                 learnable: bool = True):
        super().__init__()
        if content not in ("label", "zeros") or position not in ("sine", "sine_mlp", "none"):
            raise ValueError(f"bad switch: content={content!r}, position={position!r}")
        self.hidden_size, self.content_kind, self.position_kind = hidden_size, content, position
        self.label_embed = nn.Embedding(num_classes, hidden_size) if content == "label" else None
        self.position_mlp = None
        if position == "sine_mlp":
            self.position_mlp = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.ReLU(),
                                              nn.Linear(hidden_size, hidden_size))
        self.requires_grad_(learnable)

    def forward(self, boxes: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, *, gt_attend: str = "group",
                center_reference: bool | None = None) -> GTQueries:
        if self.label_embed is not None:
            content = self.label_embed(labels) * valid[..., None]
        else:
            content = boxes.new_zeros(*labels.shape, self.hidden_size)
        position = None
        if self.position_kind == "sine":
            position = box_sine_embedding(boxes, self.hidden_size)
        elif self.position_kind == "sine_mlp":
            position = self.position_mlp(box_sine_embedding(boxes, 2 * self.hidden_size))
        mask = decoder_attention_mask(0, valid, gt_attend=gt_attend, dtype=content.dtype)
        return GTQueries(content=content, reference=boxes, valid=valid, position=position, self_attn_mask=mask,
                         center_reference=center_reference)


class QueryProjection(nn.Module):
    """Maps a ``GTQueries`` group from the source width into one decoder's width: one linear map for the content,
    one for the position embedding. Reference boxes, validity, mask and reference kind pass through as the same
    tensors. Semi-orthogonal init with zero bias (a wider target keeps lengths and angles, a narrower one sees a
    random subspace); padding slots keep zero content."""

    def __init__(self, source_dim: int, target_dim: int, *, position: bool = True, learnable: bool = True):
        super().__init__()
        self.content = nn.Linear(source_dim, target_dim)
        self.position = nn.Linear(source_dim, target_dim) if position else None
        for layer in (self.content, self.position):
            if layer is not None:
                nn.init.orthogonal_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.requires_grad_(learnable)

    def forward(self, queries: GTQueries) -> GTQueries:
        content = self.content(queries.content) * queries.valid[..., None].to(queries.content.dtype)
        position = queries.position
        if self.position is not None and position is not None:
            position = self.position(position)
        return replace(queries, content=content, position=position)


class GTQueryBuilder(nn.Module):
    """The GT query groups of a teacher-student pair (spec step 3: "one label embedding and one 4-d box per
    object, mapped into each width by the method's own projection - never a different content for each side").

    ``embedder`` builds the group once at ``source_dim`` (the teacher's width by default); ``student_map`` and
    ``teacher_map`` (``QueryProjection``, None where a decoder already has the source width) map it into each
    decoder's width. The student's map learns through the distillation losses; the teacher's map cannot (the
    teacher decodes without grad), so it is frozen at its init: with the default source width it does not exist.
    ``shared=False`` is the earlier reading, kept for comparison: where the widths differ the teacher decodes its
    own parameter-free group (zero content, the sine embedding of the same boxes at its width) and the student a
    label embedding at its own width.
    """

    def __init__(self, num_classes: int, student_dim: int, teacher_dim: int, *, source_dim: int | None = None,
                 content: str = "label", position: str = "sine", learnable: bool = True, shared: bool = True):
        super().__init__()
        source_dim = (source_dim or teacher_dim) if shared else student_dim
        self.embedder = GTQueryEmbedder(num_classes, source_dim, content=content, position=position,
                                        learnable=learnable)
        has_position = position != "none"
        self.student_map = self.teacher_map = self.teacher_own = None
        if student_dim != source_dim:
            self.student_map = QueryProjection(source_dim, student_dim, position=has_position, learnable=learnable)
        if not shared and teacher_dim != student_dim:
            self.teacher_own = GTQueryEmbedder(num_classes, teacher_dim, content="zeros", position="sine",
                                               learnable=False)  # parameter-free: nothing to save
        elif teacher_dim != source_dim:
            self.teacher_map = QueryProjection(source_dim, teacher_dim, position=has_position, learnable=False)

    def forward(self, boxes: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, *, gt_attend: str = "group",
                center_reference: bool | None = None) -> tuple[GTQueries, GTQueries]:
        """(student group, teacher group) for padded GT ``boxes`` [B, G, 4], ``labels`` [B, G], ``valid`` [B, G]."""
        source = self.embedder(boxes, labels, valid, gt_attend=gt_attend, center_reference=center_reference)
        student = self.student_map(source) if self.student_map is not None else source
        if self.teacher_own is not None:
            return student, self.teacher_own(boxes, labels, valid, gt_attend=gt_attend,
                                             center_reference=center_reference)
        return student, self.teacher_map(source) if self.teacher_map is not None else source


# -- 4. consistent logit distillation ------------------------------------------------------------------------
def sigmoid_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, valid: torch.Tensor, *,
                    temperature: float = 1.0, kind: str = "bce", scale_t2: bool = False) -> torch.Tensor:
    """Σ_layers mean_{valid j} Σ_c BCE(σ(s_jc/τ), σ(t_jc/τ)) for sigmoid-focal heads.

    Logits [..., B, G, C] (leading dims = decoder layers, summed), valid [B, G]. ``kind="kl"`` subtracts the
    target's entropy (same gradient, 0 when student = teacher); ``scale_t2`` multiplies by τ² (Hinton).
    """
    student = student_logits / temperature
    teacher = teacher_logits.detach() / temperature
    target = teacher.sigmoid()
    loss = F.binary_cross_entropy_with_logits(student, target, reduction="none")
    if kind == "kl":
        loss = loss - F.binary_cross_entropy_with_logits(teacher, target, reduction="none")
    elif kind != "bce":
        raise ValueError(f"kind is 'bce' or 'kl', not {kind!r}")
    per_query = loss.sum(-1) * valid.to(loss.dtype)
    result = per_query.sum() / valid.sum().clamp(min=1)
    return result * temperature**2 if scale_t2 else result


def box_kd_loss(student_boxes: torch.Tensor, teacher_boxes: torch.Tensor, valid: torch.Tensor):
    """(Σ_layers mean_j ‖b^S_j − b^T_j‖₁, Σ_layers mean_j (1 − GIoU)) for cxcywh boxes [..., B, G, 4], valid [B, G]."""
    select = valid.bool().expand(student_boxes.shape[:-1])
    student, teacher = student_boxes[select], teacher_boxes.detach()[select]
    count = valid.sum().clamp(min=1)
    l1 = (student - teacher).abs().sum() / count
    giou = generalized_box_iou_loss(box_convert(student, "cxcywh", "xyxy"), box_convert(teacher, "cxcywh", "xyxy"),
                                    reduction="sum") / count
    return l1, giou


LAYER_PAIRINGS = ("proportional", "tail", "all", "last")


def layer_pairs(num_student: int, num_teacher: int, layers: str = "proportional") -> list[tuple[int, int]]:
    """(student layer, teacher layer) pairs to distil, 0-based.

    - "proportional" (default; the spec sums over all decoder layers): every student layer i meets the teacher
      layer at the nearest relative depth, t(i) = round_half_up((i + 1) · L_T / L_S) − 1, so the last meets the
      last (L_S 2, L_T 3: 0→1, 1→2; L_S 3, L_T 6: 0→1, 1→3, 2→5; L_S 3, L_T 2: 0→0, 1→0, 2→1), clamped at the
      teacher's first layer (L_S 5, L_T 1: all → 0).
    - "tail" (the reading before; "all" is its old name): the last min(L_S, L_T) layers of each, in order, so a
      deeper student's first layers meet no teacher layer and a deeper teacher's first layers no student layer.
    - "last": the last layer of each.
    """
    if layers not in LAYER_PAIRINGS:
        raise ValueError(f"layers is one of {', '.join(LAYER_PAIRINGS)}, not {layers!r}")
    if layers == "last":
        return [(num_student - 1, num_teacher - 1)]
    if layers in ("tail", "all"):
        k = min(num_student, num_teacher)
        return [(num_student - k + i, num_teacher - k + i) for i in range(k)]
    # floor(x + 1/2) with x = (i + 1) L_T / L_S, in integers: exact, and .5 rounds up (not to even); a student
    # more than twice as deep as the teacher has first layers with x < 1/2: they meet the teacher's first layer
    return [(i, max(0, (2 * (i + 1) * num_teacher + num_student) // (2 * num_student) - 1))
            for i in range(num_student)]


def pair_layers(student: torch.Tensor, teacher: torch.Tensor, layers: str = "proportional"):
    """The paired decoder layers of [L_S, ...] and [L_T, ...] stacks, as two [P, ...] stacks (``layer_pairs``)."""
    pairs = layer_pairs(len(student), len(teacher), layers)
    s_index = torch.tensor([s for s, _ in pairs], device=student.device)
    t_index = torch.tensor([t for _, t in pairs], device=teacher.device)
    return student[s_index], teacher[t_index]


def consistent_logit_kd(student_logits: torch.Tensor, student_boxes: torch.Tensor, teacher_logits: torch.Tensor,
                        teacher_boxes: torch.Tensor, valid: torch.Tensor, *, temperature: float = 1.0,
                        kind: str = "bce", layers: str = "proportional") -> dict[str, torch.Tensor]:
    """{"kd_cls", "kd_l1", "kd_giou"} on the GT-query outputs ``gt_logits`` [L, B, G, C] / ``gt_boxes`` of
    student and teacher (module docstring, item 4). Weight them λ_cls, λ_L1, λ_GIoU outside."""
    s_logits, t_logits = pair_layers(student_logits, teacher_logits, layers)
    s_boxes, t_boxes = pair_layers(student_boxes, teacher_boxes, layers)
    l1, giou = box_kd_loss(s_boxes, t_boxes, valid)
    return {"kd_cls": sigmoid_kd_loss(s_logits, t_logits, valid, temperature=temperature, kind=kind),
            "kd_l1": l1, "kd_giou": giou}


# -- 5. ablation: logit KD on Hungarian-matched queries -----------------------------------------------------
def _target_to_query(indices) -> dict[int, int]:
    queries, targets = indices
    return {int(t): int(q) for q, t in zip(queries.tolist(), targets.tolist(), strict=True)}


def hungarian_kd_loss(student_logits: torch.Tensor, student_boxes: torch.Tensor, teacher_logits: torch.Tensor,
                      teacher_boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]], *,
                      temperature: float = 1.0, kind: str = "bce", class_cost: float = 1.0, bbox_cost: float = 5.0,
                      giou_cost: float = 2.0) -> dict[str, torch.Tensor]:
    """{"kd_cls", "kd_l1", "kd_giou"} between the student query and the teacher query matched to the same GT
    object, over the normal queries ([B, Q, C] logits, [B, Q, 4] boxes; one decoder layer).

    Matching: ``transformers``' ``DeformableDetrHungarianMatcher`` (focal class cost with α 0.25, γ 2; L1;
    GIoU; default weights 1/5/2 as Deformable DETR), run separately for student and teacher against the GT.
    """
    from transformers.loss.loss_deformable_detr import DeformableDetrHungarianMatcher

    matcher = DeformableDetrHungarianMatcher(class_cost=class_cost, bbox_cost=bbox_cost, giou_cost=giou_cost)
    labels = [{"class_labels": t["class_labels"], "boxes": t["boxes"]} for t in targets]
    s_match = matcher({"logits": student_logits.detach(), "pred_boxes": student_boxes.detach()}, labels)
    t_match = matcher({"logits": teacher_logits.detach(), "pred_boxes": teacher_boxes.detach()}, labels)
    rows, s_queries, t_queries = [], [], []
    for b in range(len(labels)):
        s_map, t_map = _target_to_query(s_match[b]), _target_to_query(t_match[b])
        for j in sorted(set(s_map) & set(t_map)):
            rows.append(b)
            s_queries.append(s_map[j])
            t_queries.append(t_map[j])
    device = student_logits.device
    rows_t = torch.as_tensor(rows, dtype=torch.long, device=device)
    s_idx = torch.as_tensor(s_queries, dtype=torch.long, device=device)
    t_idx = torch.as_tensor(t_queries, dtype=torch.long, device=device)
    valid = torch.ones(1, len(rows), dtype=torch.bool, device=device)
    l1, giou = box_kd_loss(student_boxes[rows_t, s_idx][None], teacher_boxes[rows_t, t_idx][None], valid)
    cls = sigmoid_kd_loss(student_logits[rows_t, s_idx][None], teacher_logits[rows_t, t_idx][None], valid,
                          temperature=temperature, kind=kind)
    return {"kd_cls": cls, "kd_l1": l1, "kd_giou": giou}
