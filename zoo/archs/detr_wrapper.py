"""Thin wrappers over Hugging Face DETR detectors that expose what DETR distillation needs.

``DeformableDetrDetector`` and ``DabDetrDetector`` hold the HF ``...ForObjectDetection`` model as ``self.hf``
and return a ``DetrOutput``: the normal detections (and HF's Hungarian set loss when ``labels`` are given),
per-decoder-layer logits/boxes, the encoder output ("memory") with its padding mask and the feature-map
location of every memory token, and - when ``gt_queries`` are given - the decoder outputs of an extra group
of queries built from the ground truth (CLoCKDistill's target-aware queries).

How it is done (read against transformers 5.24, ``modeling_deformable_detr.py`` / ``modeling_dab_detr.py``):

- The normal path is HF's own top-level forward, untouched. A forward hook on ``hf.model.decoder`` records
  the keyword arguments HF passes to the decoder (memory, memory padding mask, spatial shapes, level start
  index, valid ratios / memory position embeddings) and the decoder's output (all layers' hidden states and
  reference points). Neither model returns these: DAB-DETR returns its memory only with
  ``output_hidden_states=True`` and neither returns spatial shapes or the token mask.
- GT queries are decoded by calling ``hf.model.decoder`` a second time with the recorded memory arguments and
  the GT group's own content / position / reference boxes. The two groups must not see each other in the
  decoder's self-attention (CLoCKDistill, like DINO's denoising groups); every other decoder operation
  (cross-attention to the memory, FFN, box refinement, heads) acts query by query. So one decoder call on
  [normal; GT] with a block-diagonal self-attention mask (``decoder_attention_mask``) and two calls, the GT
  one with that mask's GT-GT block, give the same outputs (the test checks this for DAB-DETR); the second
  form keeps the normal outputs exactly HF's and is the only one possible for single-stage Deformable DETR,
  whose learned queries carry 2-d reference points where GT queries carry 4-d boxes (one tensor holds one).
- Neither HF decoder passes a self-attention mask to its layers (DAB-DETR passes ``None``; Deformable DETR
  passes none), so the GT-GT block is injected by a forward pre-hook on each decoder layer's ``self_attn``
  that sets its ``attention_mask`` keyword, removed right after the call. The mask keeps real GT queries
  from attending to the padding slots of images with fewer objects.

Boxes everywhere are normalised (cx, cy, w, h) relative to the real (unpadded) image, as in the original
Deformable DETR and DAB-DETR (HF's decoders scale reference points by the valid ratios for the same reason).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class GTQueries:
    """An extra query group for the decoder, one query per (padded) GT object.

    content:   [B, G, d] the decoder's input embedding of each query ("target" / content part).
    reference: [B, G, 4] reference boxes (cx, cy, w, h) in [0, 1]; DAB-DETR uses them as anchors, Deformable
               DETR as 4-d reference boxes, or their centres (2-d points) when ``center_reference`` is set.
    valid:     [B, G] bool, False for padding slots of images with fewer GT objects.
    position:  [B, G, d] positional embedding; required by Deformable DETR, ignored by DAB-DETR (its decoder
               derives the position from the anchor box itself).
    self_attn_mask: [B, 1, G, G] additive mask for the group's self-attention; None = the GT-GT block of
               ``decoder_attention_mask(0, valid)`` (GT queries of one image see each other, not padding).
    center_reference: Deformable DETR only: True passes (cx, cy) instead of the box, False the 4-d box, None
               (default) what the first decoder layer was trained with: 2-d points for single-stage Deformable
               DETR, boxes for two-stage. A 4-d reference works on both (HF's decoder scales the sampling
               offsets by the box and refines all four coordinates); its box head adds logit(reference) to the
               predicted deltas, so the reference kind changes what the first layer's w, h mean.
               ``clockdistill`` passes the 4-d box (``method.gt_reference: box``, the spec's reading).
               DAB-DETR always takes the box as its anchor.
    """

    content: torch.Tensor
    reference: torch.Tensor
    valid: torch.Tensor
    position: torch.Tensor | None = None
    self_attn_mask: torch.Tensor | None = None
    center_reference: bool | None = None


@dataclass
class DetrOutput:
    """What a detector wrapper returns. B images, Q normal queries, C classes, L decoder layers, N tokens.

    logits [B, Q, C] and pred_boxes [B, Q, 4]: last decoder layer, sigmoid-focal logits, normalised cxcywh.
    layer_logits [L, B, Q, C], layer_boxes [L, B, Q, 4]: every decoder layer (last = logits / pred_boxes).
    loss, loss_dict: HF's Hungarian set loss when labels were given, else None.
    memory [B, N, d]: encoder output, all feature levels concatenated (after input projection to d).
    memory_mask [B, N] bool: True for tokens of real pixels, False for padding.
    token_level [N]: feature level of each token; token_xy [B, N, 2]: its centre (x, y) normalised to the
        real image (padding tokens fall beyond 1); spatial_shapes [levels, 2] (H, W) per level;
        valid_ratios [B, levels, 2] (w, h) fraction of each level that is real image.
    gt_logits [L, B, G, C], gt_boxes [L, B, G, 4], gt_valid [B, G]: the GT query group, when given.
    """

    logits: torch.Tensor
    pred_boxes: torch.Tensor
    layer_logits: torch.Tensor
    layer_boxes: torch.Tensor
    memory: torch.Tensor
    memory_mask: torch.Tensor
    token_level: torch.Tensor
    token_xy: torch.Tensor
    spatial_shapes: torch.Tensor
    valid_ratios: torch.Tensor
    loss: torch.Tensor | None = None
    loss_dict: dict[str, torch.Tensor] | None = None
    gt_logits: torch.Tensor | None = None
    gt_boxes: torch.Tensor | None = None
    gt_valid: torch.Tensor | None = None


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x) with x clamped to [0, 1] and eps-guarded, as HF's (and the original repos') inverse_sigmoid."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def decoder_attention_mask(num_queries: int, gt_valid: torch.Tensor, *, gt_attend: str = "group",
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive self-attention mask [B, 1, Q+G, Q+G] for Q normal queries followed by G GT queries.

    Entry [b, 0, i, j] is 0 where query i may attend to query j and ``finfo(dtype).min`` where it may not:
    - normal <-> GT: blocked both ways (the normal queries must not see the ground truth, and the GT group
      must not be changed by the normal queries: same rule as DINO's denoising groups);
    - normal -> normal: allowed (the detector's usual self-attention);
    - GT -> GT: ``gt_attend="group"`` allows real GT queries of the same image to see each other,
      ``"self"`` lets each see only itself (unconfirmed which the paper does); padding slots (``gt_valid``
      False) are never attended to by others and attend only to themselves, so no row is empty;
    - GT queries of different images never meet: attention runs per image (the batch dimension).
    """
    if gt_attend not in ("group", "self"):
        raise ValueError(f"gt_attend is 'group' or 'self', not {gt_attend!r}")
    batch, num_gt = gt_valid.shape
    total = num_queries + num_gt
    allowed = torch.zeros(batch, total, total, dtype=torch.bool, device=gt_valid.device)
    allowed[:, :num_queries, :num_queries] = True
    if gt_attend == "group":
        valid = gt_valid.bool()
        allowed[:, num_queries:, num_queries:] = valid[:, :, None] & valid[:, None, :]
    allowed |= torch.eye(total, dtype=torch.bool, device=gt_valid.device)
    mask = torch.zeros(batch, 1, total, total, dtype=dtype, device=gt_valid.device)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


@contextmanager
def self_attention_mask(layers: nn.ModuleList, mask: torch.Tensor):
    """Make each decoder layer's ``self_attn`` use ``mask``: HF's decoders pass none (see module docstring)."""

    def hook(module, args, kwargs):
        kwargs["attention_mask"] = mask
        return args, kwargs

    handles = [layer.self_attn.register_forward_pre_hook(hook, with_kwargs=True) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def valid_ratios_from_mask(memory_mask: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
    """[B, levels, 2] (w, h) share of real pixels per level, as HF's ``get_valid_ratio`` (top-left aligned)."""
    ratios, start = [], 0
    for height, width in spatial_shapes:
        level = memory_mask[:, start:start + height * width].view(-1, height, width)
        valid_h = level[:, :, 0].sum(1).float() / height
        valid_w = level[:, 0, :].sum(1).float() / width
        ratios.append(torch.stack([valid_w, valid_h], -1))
        start += height * width
    return torch.stack(ratios, 1)


def token_locations(spatial_shapes: list[tuple[int, int]], valid_ratios: torch.Tensor):
    """(level [N], xy [B, N, 2]): level and centre of every memory token, row-major per level as HF flattens.

    x = (col + 0.5) / (W_l * valid_w), y = (row + 0.5) / (H_l * valid_h): normalised to the real image, like
    the encoder's own reference points (``DeformableDetrEncoder.get_reference_points`` before it multiplies
    by the valid ratios), so they compare directly with GT boxes.
    """
    levels, points = [], []
    device = valid_ratios.device
    for level, (height, width) in enumerate(spatial_shapes):
        ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32) + 0.5,
                                torch.arange(width, device=device, dtype=torch.float32) + 0.5, indexing="ij")
        x = xs.reshape(1, -1) / (valid_ratios[:, None, level, 0] * width)
        y = ys.reshape(1, -1) / (valid_ratios[:, None, level, 1] * height)
        points.append(torch.stack([x, y], -1))
        levels.append(torch.full((height * width,), level, dtype=torch.long, device=device))
    return torch.cat(levels), torch.cat(points, 1)


class DetrDetector(nn.Module):
    """Shared forward: HF's own forward for the normal queries, recorded decoder inputs, optional GT group."""

    family = ""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model
        # HF ties the detection heads (shared across decoder layers, and with the decoder's box-refinement
        # heads). The state dict lists a tied tensor under each of its names, which safetensors refuses to
        # save; keep one name per tensor and fill the others back in on load.
        self.register_state_dict_post_hook(_drop_aliases)
        self.register_load_state_dict_pre_hook(_fill_aliases)

    def aliases(self) -> dict[str, str]:
        """{second name: first name} of every parameter or buffer reachable under more than one name."""
        first: dict[int, str] = {}
        found: dict[str, str] = {}
        for name, tensor in [*self.named_parameters(remove_duplicate=False),
                             *self.named_buffers(remove_duplicate=False)]:
            if id(tensor) in first:
                found[name] = first[id(tensor)]
            else:
                first[id(tensor)] = name
        return found

    @property
    def config(self):
        return self.hf.config

    @property
    def num_classes(self) -> int:
        return int(self.hf.config.num_labels)

    @property
    def hidden_size(self) -> int:
        return int(self.hf.config.hidden_size)

    # -- what a family provides -------------------------------------------------------
    def _memory_mask(self, kwargs: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def _spatial_shapes(self, kwargs: dict[str, Any], record: dict[str, Any]) -> list[tuple[int, int]]:
        raise NotImplementedError

    def _heads(self, decoder_output, init_reference: torch.Tensor):
        """(logits [L, B, Q, C], boxes [L, B, Q, 4]) from a decoder output, as HF's detection head does."""
        raise NotImplementedError

    def _decode(self, kwargs: dict[str, Any], queries: GTQueries):
        """(decoder output, initial reference) for a query group, with the recorded memory arguments."""
        raise NotImplementedError

    def _normal_init_reference(self, kwargs: dict[str, Any]) -> torch.Tensor:
        """The reference points HF fed the decoder for the normal queries."""
        raise NotImplementedError

    def _extra_hooks(self, record: dict[str, Any]) -> list:
        return []

    # -- forward --------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, pixel_mask: torch.Tensor | None = None,
                labels: list[dict[str, torch.Tensor]] | None = None,
                gt_queries: GTQueries | None = None) -> DetrOutput:
        """inputs [B, 3, H, W]; pixel_mask [B, H, W] (1 = real pixel); labels in HF DETR format
        (``class_labels`` [n], ``boxes`` [n, 4] normalised cxcywh; other keys are ignored)."""
        if pixel_mask is None:
            pixel_mask = torch.ones(inputs.shape[0], *inputs.shape[-2:], dtype=torch.long, device=inputs.device)
        record: dict[str, Any] = {}

        def keep(module, args, kwargs, output):
            record["kwargs"], record["output"] = kwargs, output

        handles = [self.hf.model.decoder.register_forward_hook(keep, with_kwargs=True), *self._extra_hooks(record)]
        try:
            out = self.hf(pixel_values=inputs, pixel_mask=pixel_mask, labels=labels)
        finally:
            for handle in handles:
                handle.remove()
        kwargs = record["kwargs"]
        layer_logits, layer_boxes = self._heads(record["output"], self._normal_init_reference(kwargs))
        memory_mask = self._memory_mask(kwargs).bool()
        shapes = self._spatial_shapes(kwargs, record)
        valid_ratios = valid_ratios_from_mask(memory_mask, shapes)
        token_level, token_xy = token_locations(shapes, valid_ratios)
        result = DetrOutput(
            logits=out.logits, pred_boxes=out.pred_boxes, layer_logits=layer_logits, layer_boxes=layer_boxes,
            memory=kwargs["encoder_hidden_states"], memory_mask=memory_mask, token_level=token_level,
            token_xy=token_xy, spatial_shapes=torch.as_tensor(shapes, dtype=torch.long, device=inputs.device),
            valid_ratios=valid_ratios, loss=out.loss, loss_dict=out.loss_dict)
        if gt_queries is not None:
            result.gt_logits, result.gt_boxes = self.decode_queries(kwargs, gt_queries)
            result.gt_valid = gt_queries.valid.bool()
        return result

    def decode_queries(self, kwargs: dict[str, Any], queries: GTQueries):
        """(logits [L, B, G, C], boxes [L, B, G, 4]) of a query group decoded against recorded memory ``kwargs``."""
        batch, num_gt = queries.valid.shape
        if num_gt == 0:  # no object in the whole batch: nothing to decode
            layers = len(self.hf.model.decoder.layers)
            ref = queries.content
            return (ref.new_zeros(layers, batch, 0, self.num_classes), ref.new_zeros(layers, batch, 0, 4))
        mask = queries.self_attn_mask
        if mask is None:
            mask = decoder_attention_mask(0, queries.valid, dtype=queries.content.dtype)
        with self_attention_mask(self.hf.model.decoder.layers, mask.to(queries.content.dtype)):
            decoder_output, init_reference = self._decode(kwargs, queries)
        return self._heads(decoder_output, init_reference)


def _drop_aliases(module: DetrDetector, state_dict, prefix, local_metadata) -> None:
    for alias in module.aliases():
        state_dict.pop(prefix + alias, None)


def _fill_aliases(module: DetrDetector, state_dict, prefix, *args) -> None:
    for alias, name in module.aliases().items():
        if prefix + alias not in state_dict and prefix + name in state_dict:
            state_dict[prefix + alias] = state_dict[prefix + name]


class DeformableDetrDetector(DetrDetector):
    """Wraps ``transformers.DeformableDetrForObjectDetection`` (single- or two-stage, with or without box
    refinement). Memory = ``encoder_last_hidden_state`` over all levels."""

    family = "deformable_detr"

    def _memory_mask(self, kwargs):
        return kwargs["encoder_attention_mask"]

    def _spatial_shapes(self, kwargs, record):
        return [tuple(int(s) for s in shape) for shape in kwargs["spatial_shapes_list"]]

    def _normal_init_reference(self, kwargs):
        return kwargs["reference_points"]

    def _decode(self, kwargs, queries):
        if queries.position is None:
            raise ValueError("Deformable DETR GT queries need a position embedding (GTQueries.position)")
        center = queries.center_reference
        if center is None:
            center = not self.hf.config.two_stage
        reference = queries.reference[..., :2] if center else queries.reference
        call = {**kwargs, "inputs_embeds": queries.content, "object_queries_position_embeddings": queries.position,
                "reference_points": reference}
        return self.hf.model.decoder(**call), reference

    def _heads(self, decoder_output, init_reference):
        # HF DeformableDetrForObjectDetection.forward, per layer: class_embed, and bbox_embed + logit(reference)
        # (all 4 coordinates for 4-d references, only the centre for 2-d ones).
        hidden = decoder_output.intermediate_hidden_states  # [B, L, Q, d]
        inter_references = decoder_output.intermediate_reference_points  # [B, L, Q, 2 or 4]
        logits, boxes = [], []
        for level in range(hidden.shape[1]):
            reference = inverse_sigmoid(init_reference if level == 0 else inter_references[:, level - 1])
            delta = self.hf.bbox_embed[level](hidden[:, level])
            if reference.shape[-1] == 4:
                coord = delta + reference
            else:
                coord = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
            logits.append(self.hf.class_embed[level](hidden[:, level]))
            boxes.append(coord.sigmoid())
        return torch.stack(logits), torch.stack(boxes)


class DabDetrDetector(DetrDetector):
    """Wraps ``transformers.DabDetrForObjectDetection`` (single-scale: one memory level, stride of the last
    backbone stage). GT queries: content embedding + the GT box as the 4-d anchor (DAB's query position)."""

    family = "dab_detr"

    def _memory_mask(self, kwargs):
        return kwargs["memory_key_padding_mask"]

    def _extra_hooks(self, record):
        def keep_shape(module, args, output):  # the projected feature map [B, d, H, W] gives the level's shape
            record["shape"] = tuple(int(s) for s in output.shape[-2:])

        return [self.hf.model.input_projection.register_forward_hook(keep_shape)]

    def _spatial_shapes(self, kwargs, record):
        return [record["shape"]]

    def _normal_init_reference(self, kwargs):
        return kwargs["query_position_embeddings"].sigmoid()

    def _decode(self, kwargs, queries):
        anchors = inverse_sigmoid(queries.reference)  # DAB's decoder takes anchors as logits and applies sigmoid
        call = {**kwargs, "inputs_embeds": queries.content, "query_position_embeddings": anchors}
        return self.hf.model.decoder(**call), queries.reference

    def _heads(self, decoder_output, init_reference):
        # HF DabDetrForObjectDetection.forward: class_embed on the (layer-normed) intermediate states, and
        # bbox_predictor + logit(reference of that layer); reference_points[0] is the input anchor.
        hidden = decoder_output.intermediate_hidden_states  # [L, B, Q, d]
        references = decoder_output.reference_points  # [L, B, Q, 4]
        boxes = (self.hf.bbox_predictor(hidden) + inverse_sigmoid(references)).sigmoid()
        return self.hf.class_embed(hidden), boxes
