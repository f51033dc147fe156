"""Vision Transformers from timm at any size, and what distillation reads of them.

Builders (all timm ``VisionTransformer``s, built at the task's image size and channels; timm resamples the position
embeddings of published weights to that size):

- the paper models by timm name: students ``vit_base_patch16_224`` / ``vit_large_patch16_224``; MIM teachers
  ``vit_base_patch16_224.mae`` / ``vit_large_patch16_224.mae``; discriminative teachers
  ``deit_base_patch16_224.fb_in1k`` (supervised) and ``vit_base_patch16_clip_224.openai`` (CLIP's image tower);
  ``pretrained: true`` loads timm's weights (Hugging Face hub);
- ``vit``: any size, from ``kwargs`` (``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, ``mlp_ratio``,
  ``drop_path_rate``, ``global_pool``);
- ``vit.mini_p4``: patch 4, width 64, 4 blocks of 4 heads (about 0.2 M parameters): 49 patch tokens on a 28-px
  Fashion-MNIST image (``hybrid_fashion_mnist``).

A patch size that does not divide the image is a one-line error. What the zoo reads of a ViT:

- ``vit_tokens(model, images, keep, blocks)``: the tokens after the first ``blocks`` blocks (all: after the final
  norm too) when the input holds only the patch tokens ``keep`` [B, K] (0-based patch indices) besides the CLS
  token, which always stays: MAE's masking and Hybrid Distill's token dropping;
- ``AttentionTaps(model, layers)``: the attention probabilities softmax(QKᵀ/√d) [B, h, N, N] of chosen blocks
  (1-based) at every forward. Those blocks compute attention explicitly (timm's unfused path) while tapped, so
  the probabilities are the ones the block uses; ``remove()`` restores them.
"""

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.registry import ARCHS

SIZE_KWARGS = {"patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "drop_path_rate", "global_pool"}
NAMED_KWARGS = {"drop_path_rate"}  # what a published model's builder may change without breaking its weights


def check_patches(model: nn.Module, input_shape: tuple[int, ...], name: str) -> nn.Module:
    """``model``, once its patch size is known to tile the image exactly (timm would crop the rest silently)."""
    patch = tuple(model.patch_embed.patch_size)
    height, width = input_shape[-2:]
    if height % patch[0] or width % patch[1]:
        raise ConfigError(f"{name}: patch size {patch[0]}x{patch[1]} does not divide the {height}x{width} image",
                          "pick a patch size that divides the image (student.kwargs.patch_size / teacher.kwargs) or "
                          "resize the data (data.image_size)")
    return model


def _timm_vit(name: str):
    def build(num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False, **kwargs) -> nn.Module:
        import timm

        unknown = sorted(set(kwargs) - NAMED_KWARGS)
        if unknown:
            raise ConfigError(f"{name} takes no kwargs {', '.join(unknown)}", f"it takes {sorted(NAMED_KWARGS)}")
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, in_chans=input_shape[0],
                                  img_size=tuple(input_shape[-2:]), **kwargs)
        return check_patches(model, input_shape, name)

    return build


def _sized_vit(name: str, **preset):
    def build(num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False, **kwargs) -> nn.Module:
        from timm.models.vision_transformer import VisionTransformer

        if pretrained:
            raise ConfigError(f"{name} has no pretrained weights", "set pretrained=false, or give a weights file")
        unknown = sorted(set(kwargs) - SIZE_KWARGS)
        if unknown:
            raise ConfigError(f"{name} takes no kwargs {', '.join(unknown)}", f"it takes {sorted(SIZE_KWARGS)}")
        size = {"patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3, **preset, **kwargs}
        if size["embed_dim"] % size["num_heads"]:
            raise ConfigError(f"{name}: width {size['embed_dim']} is not a multiple of {size['num_heads']} heads",
                              "pick embed_dim and num_heads so that the heads split the width evenly")
        height, width = input_shape[-2:]
        patch = int(size["patch_size"])
        if height % patch or width % patch:  # before timm builds a grid that drops the border
            raise ConfigError(f"{name}: patch size {patch}x{patch} does not divide the {height}x{width} image",
                              "pick a patch size that divides the image (student.kwargs.patch_size / teacher.kwargs) "
                              "or resize the data (data.image_size)")
        return VisionTransformer(img_size=(height, width), in_chans=input_shape[0], num_classes=num_classes, **size)

    return build


ARCHS.register("vit_base_patch16_224")(_timm_vit("vit_base_patch16_224"))
ARCHS.register("vit_large_patch16_224")(_timm_vit("vit_large_patch16_224"))
ARCHS.register("vit_base_patch16_224.mae")(_timm_vit("vit_base_patch16_224.mae"))
ARCHS.register("vit_large_patch16_224.mae")(_timm_vit("vit_large_patch16_224.mae"))
ARCHS.register("deit_base_patch16_224.fb_in1k")(_timm_vit("deit_base_patch16_224.fb_in1k"))
ARCHS.register("vit_base_patch16_clip_224.openai")(_timm_vit("vit_base_patch16_clip_224.openai"))
ARCHS.register("vit")(_sized_vit("vit"))
ARCHS.register("vit.mini_p4")(_sized_vit("vit.mini_p4", patch_size=4, embed_dim=64, depth=4, num_heads=4))


# -- what distillation reads of a ViT ---------------------------------------------------------------------------
def check_vit(model: nn.Module, role: str) -> nn.Module:
    """``model`` if it is a timm ViT with a CLS token, else one line naming the ``role`` (student, MIM teacher...)."""
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer) or model.cls_token is None:
        raise ConfigError(f"the {role} is a {type(model).__name__}; this reads the tokens and attention of a ViT "
                          "with a CLS token", "use a ViT arch: vit, vit.mini_p4 or a timm ViT name (zoo list archs)")
    return model


def depth(model: nn.Module) -> int:
    return len(model.blocks)


def heads(model: nn.Module) -> int:
    return int(model.blocks[0].attn.num_heads)


def width(model: nn.Module) -> int:
    return int(model.embed_dim)


def prefix_tokens(model: nn.Module) -> int:
    """Tokens before the patch tokens (the CLS token, and register tokens where a model has them)."""
    return int(model.num_prefix_tokens)


def patch_grid(model: nn.Module) -> tuple[int, int]:
    return tuple(model.patch_embed.grid_size)


def keep_positions(keep: torch.Tensor, prefix: int) -> torch.Tensor:
    """[B, prefix + K] token positions of the prefix tokens and the kept patches ``keep`` [B, K]."""
    front = torch.arange(prefix, device=keep.device).expand(len(keep), prefix)
    return torch.cat([front, keep + prefix], dim=1)


def vit_tokens(model: nn.Module, images: torch.Tensor, keep: torch.Tensor | None = None,
               blocks: int | None = None) -> torch.Tensor:
    """[B, prefix + K, D] tokens of ``model`` on ``images`` seeing only the patches ``keep`` (None: all), after its
    first ``blocks`` blocks (None: all of them and the final norm, as ``forward_features``)."""
    x = model._pos_embed(model.patch_embed(images))  # position embeddings are added before any token is dropped
    if keep is not None:
        positions = keep_positions(keep, prefix_tokens(model))
        x = x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    x = model.norm_pre(model.patch_drop(x))
    chosen = model.blocks if blocks is None else model.blocks[:blocks]
    for block in chosen:
        x = block(x)
    return model.norm(x) if blocks is None else x


class AttentionTaps:
    """The attention probabilities [B, h, N, N] of chosen blocks (1-based) at the latest forward, in ``probs``."""

    def __init__(self, model: nn.Module, layers: list[int]):
        from timm.models.vision_transformer import Attention

        self.probs: dict[int, torch.Tensor] = {}
        self._handles, self._fused = [], {}
        for n in layers:
            attention = model.blocks[n - 1].attn
            if not isinstance(attention, Attention):  # its forward is the one whose attn_drop input is read
                raise ConfigError(f"the attention of block {n} ({type(attention).__name__}) cannot be read",
                                  "use a ViT with timm's standard Attention (vit, vit.mini_p4, the timm ViT names)")
            self._fused[n], attention.fused_attn = attention.fused_attn, False
            # The input of attn_drop is softmax(QKᵀ/√d) before attention dropout: the block's own probabilities.
            self._handles.append(attention.attn_drop.register_forward_hook(self._keeper(n)))
        self._model = model

    def _keeper(self, layer: int):
        def keep(module, inputs, output):
            self.probs[layer] = inputs[0]

        return keep

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for n, fused in self._fused.items():
            self._model.blocks[n - 1].attn.fused_attn = fused
        self._handles.clear()
        self._fused.clear()
        self.probs.clear()
