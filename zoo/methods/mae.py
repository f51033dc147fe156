"""mae: He, Chen, Xie, Li, Dollár & Girshick, "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022).

A label-free recipe method: it trains a ViT teacher alone (``teacher.recipe.method: {name: mae, ...}``), the MIM
teacher of Hybrid Distill. Per image, a random ``mask_ratio`` of the P patches is hidden; the encoder (the ViT
being trained) sees only the visible ones (and its CLS token); a light decoder (``decoder_depth`` transformer
blocks of width ``decoder_dim``, learned position embeddings) gets the encoded visible tokens back in place, a
shared learned mask token everywhere else, and predicts every patch's pixels. The loss is on the hidden patches:

    L = (1 / |M|) Σ_{p ∈ M} mean_pixels( (x̂_p − t_p)² ),   t_p = (x_p − mean(x_p)) / sqrt(var(x_p) + 1e-6)

with normalised targets t_p (``norm_pix_loss: true``, MAE's better setting) or raw pixels. The decoder lives in
this module, not in the model: the stored teacher is the encoder alone. Its head is never trained by MAE; at the
end of the recipe it is replaced by a linear probe fitted on frozen features (``probe_head``, ``zoo.probe``), so
that the teacher's stored test accuracy measures what MAE taught it (chance with an untrained head).
Choices of ours: learned decoder position embeddings (MAE: fixed 2-D sin-cos); the loss averaged over pixels and
hidden patches as in MAE's code.
"""

import torch
from timm.models.vision_transformer import Block
from torch import nn

from zoo.archs.vit import check_vit, patch_grid, prefix_tokens, vit_tokens, width
from zoo.errors import ConfigError
from zoo.methods.base import DistillModule
from zoo.registry import METHODS


def patchify(images: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """[B, C, H, W] -> [B, P, ph·pw·C], patches in the ViT's row-major order."""
    batch, channels, height, width_ = images.shape
    rows, cols = height // patch[0], width_ // patch[1]
    x = images.reshape(batch, channels, rows, patch[0], cols, patch[1])
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * cols, patch[0] * patch[1] * channels)


def random_keep(batch: int, patches: int, mask_ratio: float, generator=None, device=None) -> torch.Tensor:
    """[B, K] visible patches per image, K = P − round(ratio·P), a uniform draw, ascending."""
    count = patches - int(round(mask_ratio * patches))
    noise = torch.rand(batch, patches, generator=generator, device=device)
    return noise.argsort(dim=1)[:, :count].sort(dim=1).values


class MaeDecoder(nn.Module):
    """Encoded visible tokens -> pixels of every patch."""

    def __init__(self, encoder_width: int, patches: int, prefix: int, pixels: int, dim: int, depth: int,
                 heads: int):
        super().__init__()
        self.prefix = prefix
        self.embed = nn.Linear(encoder_width, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, prefix + patches, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.predict = nn.Linear(dim, pixels)

    def forward(self, tokens: torch.Tensor, keep: torch.Tensor, patches: int) -> torch.Tensor:
        """[B, P, pixels] predictions from the encoder's [B, prefix + K, D] tokens of the patches ``keep``."""
        x = self.embed(tokens)
        batch, dim = x.shape[0], x.shape[-1]
        full = self.mask_token.expand(batch, patches, dim).clone()
        full.scatter_(1, keep.unsqueeze(-1).expand(-1, -1, dim), x[:, self.prefix:])
        x = torch.cat([x[:, :self.prefix], full], dim=1) + self.pos_embed
        return self.predict(self.norm(self.blocks(x)))[:, self.prefix:]


@METHODS.register("mae")
class MaskedAutoencoder(DistillModule):
    uses_teachers = False
    kinds = ("image_classification",)

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg = self.method_cfg
        self.encoder = check_vit(student, "model MAE trains")
        self.mask_ratio = float(cfg.get("mask_ratio", 0.75))
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"mae: mask_ratio={self.mask_ratio} must be in [0, 1)", "MAE's is 0.75")
        self.norm_pix_loss = bool(cfg.get("norm_pix_loss", True))
        self.probe_head = bool(cfg.get("probe_head", True))
        self.patch = tuple(student.patch_embed.patch_size)
        self.patches = patch_grid(student)[0] * patch_grid(student)[1]
        channels = int(context.input_shape[0])
        self.decoder = MaeDecoder(width(student), self.patches, prefix_tokens(student),
                                  self.patch[0] * self.patch[1] * channels, int(cfg.get("decoder_dim", 64)),
                                  int(cfg.get("decoder_depth", 1)), int(cfg.get("decoder_heads", 4)))

    def encode(self, images: torch.Tensor, mask_ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder tokens of the visible patches, their indices [B, K]); ratio 0 is the plain encoder."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        keep = random_keep(len(images), self.patches, ratio, device=images.device)
        return vit_tokens(self.encoder, images, keep), keep

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        pixels = patchify(images, self.patch)
        if not self.norm_pix_loss:
            return pixels
        mean, var = pixels.mean(-1, keepdim=True), pixels.var(-1, keepdim=True)
        return (pixels - mean) / (var + 1e-6).sqrt()

    def losses(self, batch):
        images = batch["inputs"]
        tokens, keep = self.encode(images)
        predicted = self.decoder(tokens, keep, self.patches)
        hidden = torch.ones(len(images), self.patches, device=images.device)
        hidden.scatter_(1, keep, 0.0)
        per_patch = ((predicted - self.targets(images)) ** 2).mean(-1)
        return {"pixel": (per_patch * hidden).sum() / hidden.sum().clamp_min(1.0)}

    def batch_size(self, batch) -> int:
        return len(batch["inputs"])

    def parameter_groups(self):
        return [*super().parameter_groups(), {"params": list(self.decoder.parameters())}]

    def on_train_end(self) -> None:
        super().on_train_end()
        if not self.probe_head or self.trainer.datamodule is None:
            return
        from zoo.probe import linear_probe

        # a recipe capped at N batches an epoch (a smoke-sized one) probes N batches of each split
        capped = self.trainer.limit_train_batches
        limit = capped if isinstance(capped, int) and not isinstance(capped, bool) else None
        probe = linear_probe(self.encoder, self.trainer.datamodule, limit_batches=limit)
        self.encoder.head = probe.head.to(self.device)
