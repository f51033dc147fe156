"""LLaVA-style vision-language models: a frozen timm vision tower, an ``mlp2x_gelu`` projector and a Qwen2 decoder
built from a transformers config (Liu et al., "Visual Instruction Tuning", 2023; LLaVA-MoD's students and teachers).

A batch ``inputs = {"input_ids", "attention_mask", "images"[, "labels"]}`` (``zoo.data.llava``) holds token ids in
the qwen chat template with the image as the sentinel id -200 (``zoo.data.llava_format``). The model replaces the
sentinel by the image's visual tokens: the tower's patch features of its second-to-last layer (LLaVA's
``mm_vision_select_layer -2``, CLS dropped) through the projector Linear(C, d) - GELU - Linear(d, d). Labels get -100
on the visual tokens. ``forward`` returns the logits over the spliced sequence with its labels; ``generate`` decodes
greedily with the decoder's KV cache until the stop token (``<|im_end|>``).

Names (ARCHS):

- ``llava-qwen2-0.5b``, ``llava-qwen2-1.5b``, ``llava-qwen2-7b``: CLIP ViT-L/14 at 336 px (timm
  ``vit_large_patch14_clip_336.openai``, 576 visual tokens of width 1024) with the Qwen2 decoder of that size (the
  sizes of the published Qwen2 configs). ``pretrained: true`` loads CLIP from timm and the decoder from
  ``Qwen/Qwen2-*`` on the Hugging Face Hub (the projector is always new, as LLaVA's stage 0 starts it); random init
  otherwise. The 0.5B is LLaVA-MoD's released student, the 7B its teacher's LLM.
- ``llava-tiny-h64`` and ``llava-tiny-h128``: the mini task's student (hidden 64, 2 layers, FFN 256) and teacher
  (hidden 128, 4 layers, FFN 512), both on a tiny ViT (56 px, 28-px patches: one visual token per cell of a 2 x 2
  scene, 2 blocks, features after the first, read out through its pretraining heads: 15 numbers a token, see
  ``zoo.archs.tiny_tower``), so that every model reads the same frozen tower, as every LLaVA-MoD model reads the same
  CLIP. ``pretrained: true`` gives the tower the weights it is pretrained to once on
  Fashion-MNIST cells (``zoo.archs.tiny_tower``; the decoders have no published weights and start random);
  ``pretrained: false`` its init, fixed by a seed (tests). The vocabulary is the data's tokenizer.

The vision tower is frozen and stays in eval mode; which other parts train is ``set_trainable`` (parts: projector,
embed, attention, ffn, router, norm, head; ``lm`` = all the decoder's), set per stage by the methods. A decoder whose
FFNs were upcycled into experts (``zoo.archs.moe.upcycle``) counts its activated parameters apart from its total.
"""

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from zoo.data.llava_format import IGNORE, IM_END, IMAGE_ID
from zoo.errors import ConfigError
from zoo.registry import ARCHS

CLIP_L336 = {"timm": "vit_large_patch14_clip_336.openai", "kwargs": {}, "seed": None, "readout": None}
TINY_TOWER = {"timm": "vit_tiny_patch16_224", "seed": 0, "readout": {"what": 11, "where": 4},
              "kwargs": {"img_size": 56, "patch_size": 28, "embed_dim": 128, "depth": 2, "num_heads": 2}}
FEATURE_LAYER = -2  # LLaVA's mm_vision_select_layer: the output of the second-to-last block
QWEN2 = {  # transformers Qwen2Config sizes of the published checkpoints; "hub" is where pretrained weights come from
    "qwen2-0.5b": {"hub": "Qwen/Qwen2-0.5B", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                   "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                   "tie_word_embeddings": True},
    "qwen2-1.5b": {"hub": "Qwen/Qwen2-1.5B", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                   "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                   "tie_word_embeddings": True},
    "qwen2-7b": {"hub": "Qwen/Qwen2-7B", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                 "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                 "tie_word_embeddings": False},
    "tiny-h64": {"hub": None, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": None, "tie_word_embeddings": True,
                 "initializer_range": 0.125},
    "tiny-h128": {"hub": None, "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": None, "tie_word_embeddings": True,
                  "initializer_range": 0.088},
}
QWEN2_COMMON = {"rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768}
DEFAULT_TOKENIZER = "Qwen/Qwen2-0.5B"  # the Qwen2 vocabulary, shared by every Qwen2 size
PARTS = ("projector", "embed", "attention", "ffn", "router", "norm", "head")
LM_PARTS = ("embed", "attention", "ffn", "router", "norm", "head")


class VisionTower(nn.Module):
    """A timm ViT cut after the block whose output LLaVA reads; patch tokens out, [B, N, C]. Frozen, always in eval
    mode (``train()`` leaves it there). With ``readout`` ({name: classes}) the tokens it hands on are the softmax
    outputs of those linear heads over the features, concatenated (the tiny tower's: what each cell holds and which
    cell it is); without, the features themselves (CLIP's)."""

    def __init__(self, vit: nn.Module, readout: dict[str, int] | None = None):
        super().__init__()
        keep = len(vit.blocks) + 1 + FEATURE_LAYER
        vit.blocks = vit.blocks[:keep]  # the blocks after it never run: not part of the model
        vit.norm = vit.fc_norm = vit.head_drop = vit.head = nn.Identity()  # timm ViT's parts after the blocks
        self.vit = vit
        self.readout = nn.ModuleDict({name: nn.Linear(int(vit.embed_dim), n) for name, n in (readout or {}).items()})
        self.eval().requires_grad_(False)
        self.width = sum((readout or {}).values()) or int(vit.embed_dim)
        self.image_size = int(vit.patch_embed.img_size[0])
        self.tokens = int(vit.patch_embed.num_patches)

    def train(self, mode: bool = True) -> "VisionTower":
        return super().train(False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, N, C] patch features of the kept blocks (with gradients where the weights take them)."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ConfigError(f"images of {tuple(images.shape[-2:])} px for a vision tower of {self.image_size} px",
                              f"set the data block's image.size to {self.image_size}")
        vit = self.vit
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        for block in vit.blocks:
            x = block(x)
        return x[:, vit.num_prefix_tokens:]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)
        if not len(self.readout):
            return features
        return torch.cat([head(features).softmax(dim=-1) for head in self.readout.values()], dim=-1)


def build_tower(spec: dict, pretrained: bool) -> VisionTower:
    """A tower of ``spec``: published timm weights (CLIP) with ``pretrained``, or, for a seeded tiny tower, the
    weights it is pretrained to once (``zoo.archs.tiny_tower``); else its seeded (or random) init."""
    import timm

    seeded = spec["seed"] is not None
    with torch.random.fork_rng() if seeded else contextlib.nullcontext():
        if seeded:
            torch.manual_seed(spec["seed"])  # the same tower in every model that names it
        vit = timm.create_model(spec["timm"], pretrained=pretrained and not seeded, num_classes=0, **spec["kwargs"])
        tower = VisionTower(vit, spec["readout"])
    if pretrained and seeded:
        from zoo.archs.tiny_tower import pretrained_weights
        from zoo.weights import load_weights

        load_weights(tower, pretrained_weights(spec, tower))
    return tower


@dataclass
class VlmOutput:
    logits: torch.Tensor          # [B, L', V] over the spliced sequence
    labels: torch.Tensor | None   # [B, L'], -100 on visual tokens, padding and prompts
    attention_mask: torch.Tensor  # [B, L']


class VisionLanguageModel(nn.Module):
    def __init__(self, tower: VisionTower, lm: nn.Module, stop_id: int, pad_id: int):
        super().__init__()
        hidden = int(lm.config.hidden_size)
        self.vision = tower
        self.projector = nn.Sequential(nn.Linear(tower.width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.lm = lm
        self.stop_id, self.pad_id = int(stop_id), int(pad_id)
        # A head tied to the embeddings is one tensor under two names, which safetensors refuses to write: the state
        # dict keeps it once (as the embeddings), and loading fills the head's name back in.
        self._tied = lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
        self.register_state_dict_post_hook(_drop_tied_head)
        self.register_load_state_dict_pre_hook(_restore_tied_head)

    @property
    def vocab_size(self) -> int:
        return int(self.lm.config.vocab_size)

    def decoder_layers(self) -> nn.ModuleList:
        return self.lm.model.layers

    # -- the spliced sequence ------------------------------------------------------------------------------------
    def splice(self, inputs: dict[str, torch.Tensor], left_pad: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(embeddings [B, L', d], attention mask [B, L'], labels [B, L'] or None): each sample's real tokens with its
        image sentinel replaced by its visual tokens, padded on the right (training) or the left (generation)."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"].bool()
        labels = inputs.get("labels")
        has_image = (ids == IMAGE_ID).any(dim=1)
        visual = self.projector(self.vision(inputs["images"][has_image])) if has_image.any() else None
        text = self.lm.get_input_embeddings()(ids.clamp_min(0))
        rows, row_labels, image_row = [], [], 0
        for b in range(len(ids)):
            keep = mask[b]
            emb, sample_ids = text[b][keep], ids[b][keep]
            sample_labels = labels[b][keep] if labels is not None else None
            where = (sample_ids == IMAGE_ID).nonzero()
            if len(where):
                p, features = int(where[0]), visual[image_row]
                image_row += 1
                emb = torch.cat([emb[:p], features, emb[p + 1:]])
                if sample_labels is not None:
                    filler = sample_labels.new_full((len(features),), IGNORE)
                    sample_labels = torch.cat([sample_labels[:p], filler, sample_labels[p + 1:]])
            rows.append(emb)
            row_labels.append(sample_labels)
        return pad_rows(rows, row_labels, left_pad)

    def forward(self, inputs: dict[str, torch.Tensor]) -> VlmOutput:
        embeds, mask, labels = self.splice(inputs)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return VlmOutput(out.logits, labels, mask)

    @torch.no_grad()
    def generate(self, inputs: dict[str, torch.Tensor], max_new_tokens: int) -> tuple[list[list[int]], int]:
        """Greedy answers to the prompts in ``inputs`` (each ends by opening the assistant's turn), cut before the
        stop token; and the number of tokens decoded (the stop tokens included)."""
        embeds, mask, _ = self.splice({k: v for k, v in inputs.items() if k != "labels"}, left_pad=True)
        mask = mask.long()
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=1)
        cache, token = out.cache, out.logits[:, -1].argmax(-1)
        tokens, done, decoded = [], torch.zeros_like(token, dtype=torch.bool), 0
        for step in range(max_new_tokens):
            tokens.append(token)
            decoded += int((~done).sum())
            done |= token == self.stop_id
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.lm(inputs_embeds=self.lm.get_input_embeddings()(token)[:, None], attention_mask=mask,
                          position_ids=positions, cache=cache, use_cache=True)
            cache, token = out.cache, out.logits[:, -1].argmax(-1)
        answers = []
        for row in torch.stack(tokens, dim=1).tolist():
            answers.append(row[: row.index(self.stop_id)] if self.stop_id in row else row)
        return answers, decoded

    # -- parts, training, counting -------------------------------------------------------------------------------
    def part_of(self, name: str) -> str:
        """The part a parameter of this model belongs to (``PARTS``, or ``vision``)."""
        if name.startswith("vision."):
            return "vision"
        if name.startswith("projector."):
            return "projector"
        if ".embed_tokens." in name:
            return "embed"
        if name.startswith("lm.lm_head."):
            return "head"
        if ".self_attn." in name:
            return "attention"
        if ".mlp.wg." in name:
            return "router"
        if ".mlp." in name:
            return "ffn"
        return "norm"

    def set_trainable(self, parts) -> None:
        """Train exactly ``parts`` (names in ``PARTS``, or ``lm`` for all the decoder's); the tower stays frozen."""
        wanted = set()
        for part in parts:
            if part not in (*PARTS, "lm"):
                raise ConfigError(f"trainable part '{part}' is not a part of a vision-language model",
                                  f"parts: {', '.join(PARTS)}, or lm (the decoder's {', '.join(LM_PARTS)}); the "
                                  "vision tower is always frozen")
            wanted |= set(LM_PARTS) if part == "lm" else {part}
        for name, param in self.named_parameters():
            param.requires_grad_(self.part_of(name) in wanted)

    def active_parameters(self) -> int:
        """Parameters one token passes through: all, less the experts it is not routed to (``zoo.archs.moe``)."""
        from zoo.archs.moe import SparseMoE

        idle = 0
        for module in self.modules():
            if isinstance(module, SparseMoE):
                per_expert = sum(p.numel() for p in module.experts[0].parameters())
                idle += (module.num_experts - module.top_k) * per_expert
        return sum(p.numel() for p in self.parameters()) - idle


TIED_HEAD, EMBEDDINGS = "lm.lm_head.weight", "lm.model.embed_tokens.weight"


def _drop_tied_head(module, state, prefix, local_metadata) -> None:
    if module._tied:
        state.pop(prefix + TIED_HEAD, None)


def _restore_tied_head(module, state, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    if module._tied and prefix + EMBEDDINGS in state:
        state.setdefault(prefix + TIED_HEAD, state[prefix + EMBEDDINGS])


def pad_rows(rows: list[torch.Tensor], row_labels: list, left_pad: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rows of [n_b, d] embeddings (and their labels) padded with zeros (labels -100) to one tensor, mask 1 on real
    tokens."""
    length = max(len(r) for r in rows)
    embeds = rows[0].new_zeros(len(rows), length, rows[0].shape[-1])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    with_labels = row_labels[0] is not None
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long, device=rows[0].device) if with_labels else None
    for b, row in enumerate(rows):
        span = slice(length - len(row), length) if left_pad else slice(0, len(row))
        embeds[b, span], mask[b, span] = row, 1
        if with_labels:
            labels[b, span] = row_labels[b]
    return embeds, mask, labels


def build_vlm(size: str, tower: dict, pretrained: bool, tokenizer: str | None) -> VisionLanguageModel:
    """A ``VisionLanguageModel`` of decoder ``size`` (a row of ``QWEN2``) on ``tower``, for the data's tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from zoo.archs.text import from_hub, load_tokenizer

    sizes = dict(QWEN2[size])
    hub = sizes.pop("hub")
    if tokenizer is None and sizes["vocab_size"] is None:
        raise ConfigError(f"{size} takes its vocabulary from the data's tokenizer, and none was given",
                          "build it through a task (data.tokenizer) or pass tokenizer=<folder>")
    vocabulary = load_tokenizer(tokenizer or DEFAULT_TOKENIZER)
    if sizes["vocab_size"] is None:
        sizes["vocab_size"] = len(vocabulary)
    elif len(vocabulary) > sizes["vocab_size"]:
        raise ConfigError(f"tokenizer {tokenizer} has {len(vocabulary)} tokens, more than {size}'s "
                          f"{sizes['vocab_size']}",
                          "use the Qwen2 tokenizer (data.tokenizer=Qwen/Qwen2-0.5B)")
    stop_id = vocabulary.convert_tokens_to_ids(IM_END)
    pad_id = vocabulary.pad_token_id if vocabulary.pad_token_id is not None else stop_id
    if pretrained and hub is not None:
        lm = from_hub(Qwen2ForCausalLM.from_pretrained, hub, f"{size} weights")
    else:  # a tiny decoder has no published weights: pretrained means its tower's only
        lm = Qwen2ForCausalLM(Qwen2Config(**sizes, **QWEN2_COMMON, pad_token_id=pad_id))
    return VisionLanguageModel(build_tower(tower, pretrained), lm, stop_id, pad_id).train()


@ARCHS.register("llava-qwen2-0.5b")
def llava_qwen2_05b(num_classes=None, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return build_vlm("qwen2-0.5b", CLIP_L336, pretrained, tokenizer)


@ARCHS.register("llava-qwen2-1.5b")
def llava_qwen2_15b(num_classes=None, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return build_vlm("qwen2-1.5b", CLIP_L336, pretrained, tokenizer)


@ARCHS.register("llava-qwen2-7b")
def llava_qwen2_7b(num_classes=None, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return build_vlm("qwen2-7b", CLIP_L336, pretrained, tokenizer)


@ARCHS.register("llava-tiny-h64")
def llava_tiny_h64(num_classes=None, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return build_vlm("tiny-h64", TINY_TOWER, pretrained, tokenizer)


@ARCHS.register("llava-tiny-h128")
def llava_tiny_h128(num_classes=None, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return build_vlm("tiny-h128", TINY_TOWER, pretrained, tokenizer)
