"""DETR-family detectors from Hugging Face transformers, with timm backbones (CLoCKDistill's models).

Each builder returns a ``zoo.archs.detr_wrapper`` detector (``DeformableDetrDetector`` or
``DabDetrDetector``) around the HF ``...ForObjectDetection`` model, so the same module trains, evaluates
and feeds distillation (memory, token locations, GT queries). Signature, like every zoo builder::

    build(num_classes, input_shape, pretrained=False, *, hub_name=<default>, pretrained_backbone=False,
          out_indices=None, **config)

- ``num_classes``: sigmoid-focal classes (no background class: HF ``num_labels``).
- ``input_shape``: (C, H, W); only C is used (the backbone's input channels). DETRs take any H, W.
- ``pretrained=True``: the whole detector from the HF hub checkpoint ``hub_name`` (``SenseTime/deformable-detr``,
  ``IDEA-Research/dab-detr-resnet-50``; a local ``save_pretrained`` folder works too), with the classification
  head re-initialised for ``num_classes`` (``ignore_mismatched_sizes``). Archs with no released detector
  (``hub_name=None``: the r18/r101 and tiny ones) load ImageNet weights into the backbone instead.
- ``pretrained_backbone=True``: ImageNet weights from timm into the backbone of a freshly initialised
  detector. Transformers 5 no longer loads backbone weights itself (``load_backbone`` builds from config
  only), so this reads ``timm.create_model(backbone, pretrained=True, features_only=True)``.
- ``out_indices``: which timm feature stages feed the transformer (resnet: 1..4 = strides 4..32);
  default: the last ``num_feature_levels`` stages up to 3 (Deformable, extra levels by stride-2 convs),
  the last stage (DAB).
- ``**config``: any HF config field with the family's own name (``d_model`` for Deformable DETR,
  ``hidden_size`` for DAB-DETR, ``num_queries``, ``encoder_layers``, ``decoder_layers``, ``with_box_refine``,
  ``two_stage``, ``dropout``, ...); an unknown field is an error.

Both hub downloads need the network; tests build random-initialised tiny configs.

A freshly built Deformable DETR gets the original repo's head init (focal prior bias, zero last box layer),
which transformers 5 omits. Defaults that differ from HF's config defaults: ``auxiliary_loss=True`` (the
original Deformable DETR and DAB-DETR recipes train with per-layer losses; HF defaults to off).
``tie_word_embeddings`` is left on (HF shares the class head across decoder layers and the box heads with
the box-refinement heads, as the original code does) except with one decoder layer, where HF's tying
pattern has nothing to tie and fails.
The ``.tiny`` archs follow the CPU-learnable setup in ``shared/methods/clockdistill.md`` (resnet18 cut at
stride 8/16, d 64, 1 encoder / 2 decoder layers, 20 queries, box refinement, dropout 0).
"""

from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ConfigError
from zoo.registry import ARCHS


@dataclass(frozen=True)
class DetrArch:
    family: str  # "deformable_detr" or "dab_detr"
    backbone: str  # timm model name
    hub: str | None = None  # HF hub checkpoint of the whole detector, if one was released
    defaults: dict[str, Any] = field(default_factory=dict)  # HF config fields


_DEFORMABLE_TINY = dict(d_model=64, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=256, decoder_ffn_dim=256,
                        encoder_attention_heads=4, decoder_attention_heads=4, num_queries=20, num_feature_levels=2,
                        with_box_refine=True, dropout=0.0, out_indices=(2, 3))
_DAB_TINY = dict(hidden_size=64, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=256, decoder_ffn_dim=256,
                 encoder_attention_heads=4, decoder_attention_heads=4, num_queries=20, dropout=0.0, out_indices=(3,))


def _timm_backbone(hf_model):
    """The timm feature extractor inside an HF detector (HF unwraps it for Deformable DETR, not for DAB)."""
    encoder = hf_model.model.backbone
    encoder = getattr(encoder, "conv_encoder", encoder)  # DAB wraps it with its position embedding
    return getattr(encoder.model, "_backbone", encoder.model)


def load_imagenet_backbone(hf_model, backbone: str) -> None:
    """Copy timm's ImageNet weights for ``backbone`` into the detector's backbone (needs the network)."""
    import timm

    target = _timm_backbone(hf_model)
    source = timm.create_model(backbone, pretrained=True, features_only=True,
                               out_indices=tuple(target.feature_info.out_indices),
                               in_chans=int(hf_model.config.backbone_config.num_channels))
    target.load_state_dict(source.state_dict())  # HF's frozen batch norm drops num_batches_tracked itself


def init_deformable_heads(hf_model, prior_prob: float = 0.01) -> None:
    """The original Deformable DETR head init, which transformers 5 leaves out (DAB-DETR's HF init has it):
    class bias -log((1 - p) / p) with p = 0.01 (focal-loss prior), last box layer zero, with its w/h bias -2
    on the first decoder layer's head (the original sets it before cloning, i.e. on every head, only without
    box refinement; with it, only on head 0)."""
    import math

    import torch

    with torch.no_grad():
        for head in hf_model.class_embed:
            head.bias.fill_(-math.log((1 - prior_prob) / prior_prob))
        for i, head in enumerate(hf_model.bbox_embed):
            head.layers[-1].weight.zero_()
            head.layers[-1].bias.zero_()
            if i == 0 or not hf_model.config.with_box_refine:
                head.layers[-1].bias[2:] = -2.0


def _hf_classes(family: str):
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        # the wrappers call HF's decoders with their transformers-5 keyword names
        raise ConfigError(f"the DETR archs need transformers>=5.24, not {transformers.__version__}",
                          "pip install 'transformers>=5.24'")
    if family == "deformable_detr":
        from zoo.archs.detr_wrapper import DeformableDetrDetector

        return transformers.DeformableDetrConfig, transformers.DeformableDetrForObjectDetection, DeformableDetrDetector
    if not hasattr(transformers, "DabDetrForObjectDetection"):
        raise ConfigError(f"transformers {transformers.__version__} has no DAB-DETR",
                          "pip install 'transformers>=5.24'")
    from zoo.archs.detr_wrapper import DabDetrDetector

    return transformers.DabDetrConfig, transformers.DabDetrForObjectDetection, DabDetrDetector


def _default_out_indices(arch: DetrArch, settings: dict[str, Any]) -> tuple[int, ...]:
    if arch.family == "dab_detr":
        return (4,)
    levels = int(settings.get("num_feature_levels", 4))
    return tuple(range(max(2, 5 - levels), 5)) if levels < 4 else (2, 3, 4)


def build_detr(arch: DetrArch, num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False, *,
               hub_name: str | None = "default", pretrained_backbone: bool = False,
               out_indices: tuple[int, ...] | None = None, **config: Any):
    config_cls, model_cls, wrapper_cls = _hf_classes(arch.family)
    hub = arch.hub if hub_name == "default" else hub_name
    settings = {"auxiliary_loss": True, **arch.defaults, **config}
    out_indices = settings.pop("out_indices", None) if out_indices is None else out_indices
    # HF configs keep unknown keywords as plain attributes; a misspelt field would be silently ignored.
    known = set(config_cls.__dataclass_fields__) | set(getattr(config_cls, "attribute_map", {}))
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(f"{config_cls.__name__} has no field '{unknown[0]}'",
                          "pass HF config fields by their own names (d_model for Deformable, hidden_size for DAB)")
    if pretrained and hub:
        if input_shape[0] != 3:
            raise ConfigError(f"'{hub}' takes 3-channel images, not {input_shape[0]}")
        # The checkpoint fixes the architecture: only the caller's fields (training switches) go on top.
        model = model_cls.from_pretrained(hub, num_labels=num_classes, ignore_mismatched_sizes=True,
                                          **{"auxiliary_loss": True, **config})
        return wrapper_cls(model)
    decoder_layers = int(settings.get("decoder_layers", getattr(config_cls, "decoder_layers", 6)))
    settings.setdefault("tie_word_embeddings", decoder_layers > 1)
    indices = list(out_indices or _default_out_indices(arch, settings))
    backbone_config = {"model_type": "timm_backbone", "backbone": arch.backbone, "num_channels": int(input_shape[0]),
                       "features_only": True, "out_indices": indices}
    model = model_cls(config_cls(backbone_config=backbone_config, num_labels=num_classes, **settings))
    if arch.family == "deformable_detr":
        init_deformable_heads(model)
    if pretrained or pretrained_backbone:
        load_imagenet_backbone(model, arch.backbone)
    return wrapper_cls(model)


def _builder(arch: DetrArch):
    def build(num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False, **kwargs: Any):
        return build_detr(arch, num_classes, input_shape, pretrained, **kwargs)

    build.arch = arch
    return build


# Literal names, so that `zoo list archs` can read them without importing torch.
ARCHS.register("deformable_detr.r50")(_builder(DetrArch("deformable_detr", "resnet50", "SenseTime/deformable-detr")))
ARCHS.register("deformable_detr.r18")(_builder(DetrArch("deformable_detr", "resnet18")))
ARCHS.register("deformable_detr.r101")(_builder(DetrArch("deformable_detr", "resnet101")))
ARCHS.register("deformable_detr.tiny")(_builder(DetrArch("deformable_detr", "resnet18", defaults=_DEFORMABLE_TINY)))
ARCHS.register("dab_detr.r50")(_builder(DetrArch("dab_detr", "resnet50", "IDEA-Research/dab-detr-resnet-50")))
ARCHS.register("dab_detr.r18")(_builder(DetrArch("dab_detr", "resnet18")))
ARCHS.register("dab_detr.r101")(_builder(DetrArch("dab_detr", "resnet101")))
ARCHS.register("dab_detr.tiny")(_builder(DetrArch("dab_detr", "resnet18", defaults=_DAB_TINY)))
