"""Unlabelled general English text packed into fixed-length token sequences, for latent distillation stages.

ERNIE-Tiny's general distillation reads Wikipedia and BookCorpus; the zoo's offline stand-in is real English text
that Debian installs (``apt-get install wordnet-base fortunes``), and any corpus a user brings. ``data.sources`` lists
``{format, path}``, a file or a folder, read in order:

- ``wordnet``: WordNet 3.0's ``data.noun``, ``data.verb``, ``data.adj``, ``data.adv`` (a folder reads those four; in
  /usr/share/wordnet). Lines starting with two spaces are the licence header; every other line ends with
  ``| gloss``, a definition followed by quoted examples (``| improve; "The weather improved toward evening"``): the
  definition and each example are texts.
- ``fortune``: fortune-mod's files (/usr/share/games/fortunes): entries separated by lines holding only ``%``, each
  entry a text. A folder reads its files in name order, not its subfolders (fortune-mod's ``off/`` is rot13), and
  skips the ``.dat`` indexes; of a file ``X`` and its twin ``X.u8`` only ``X.u8`` is read, the one fortune-mod
  promises is UTF-8 (Debian's are links to ``X``, so the text is read once either way).
- ``lines``: one text per line; a folder reads its files in name order.

Every file is UTF-8 (a byte that is not is an error naming the line). ``max_texts`` keeps a seeded choice of that
many texts, in reading order, for quick runs.

Packing (BERT's pre-training input): the texts are tokenized without special tokens and concatenated with a
``[SEP]`` between texts; the token stream is cut into chunks of ``max_length - 2`` tokens, each served as
``[CLS] chunk [SEP]``, and the last, short chunk is dropped. So every sequence has exactly ``max_length`` tokens and
no padding; a chunk may start or end at a text's ``[SEP]``.

The only split is ``train``, ``epoch_size`` sequences an epoch: sample ``i`` of epoch ``e`` is packed sequence
``perm[i]`` with ``perm = default_rng([split_seed, run seed, e]).permutation(n)``, so each epoch draws another
seeded subset, the same after a resume and in every worker (samples arrive as (epoch, index) pairs from
``EpochTaggedSampler``; a plain index means epoch 0). An ``epoch_size`` above the ``n`` sequences wraps around:
``perm[i % n]``, every sequence once before any twice. Batches: ``inputs = {"input_ids": [B, max_length],
"attention_mask": [B, max_length]}`` (all ones) and ``index``, the packed sequence number (what a sample is, stable
across epochs); no targets.
"""

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from zoo.data.base import ZooDataModule, fingerprint, read_utf8
from zoo.errors import DataError
from zoo.registry import DATASETS

WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
INSTALL = {"wordnet": "apt-get install wordnet-base (it fills /usr/share/wordnet)",
           "fortune": "apt-get install fortunes (it fills /usr/share/games/fortunes)"}
EXAMPLES_START = re.compile(r'(?:^|; )"')  # where a gloss' quoted examples begin
QUOTED = re.compile(r'"([^"]*)"')


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of a UTF-8 file, without line ends."""
    return [(number, line.rstrip("\r")) for number, line in enumerate(read_utf8(path).split("\n"), start=1)]


def read_wordnet(path: Path) -> list[str]:
    """Definitions and example sentences of a WordNet data file, in file order."""
    texts = []
    for number, line in numbered_lines(path):
        if line.startswith("  ") or not line.strip():  # the licence header, the last line end
            continue
        _, bar, gloss = line.partition(" | ")
        if not bar:
            raise DataError(f"{path}:{number}: not a WordNet data line (no ' | ' before a gloss)",
                            "format wordnet reads data.noun, data.verb, data.adj, data.adv")
        gloss = gloss.strip()
        start = EXAMPLES_START.search(gloss)
        definition = gloss[:start.start()] if start else gloss
        examples = QUOTED.findall(gloss[start.start():]) if start else []
        texts += [text.strip() for text in (definition, *examples) if text.strip()]
    return texts


def read_fortunes(path: Path) -> list[str]:
    """The entries of a fortune file, in file order."""
    texts, entry = [], []
    for _, line in numbered_lines(path):
        if line == "%":
            texts.append("\n".join(entry).strip())
            entry = []
        else:
            entry.append(line)
    texts.append("\n".join(entry).strip())  # the last entry needs no closing %
    return [text for text in texts if text]


def read_lines(path: Path) -> list[str]:
    return [line.strip() for _, line in numbered_lines(path) if line.strip()]


READERS = {"wordnet": read_wordnet, "fortune": read_fortunes, "lines": read_lines}


def source_files(fmt: str, path: Path) -> list[Path]:
    """The files a source reads: the path itself, or the files of a folder that its format reads."""
    if path.is_file():
        return [path]
    if fmt == "wordnet":
        return [path / name for name in WORDNET_FILES if (path / name).is_file()]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if fmt == "fortune":
        names = {p.name for p in files}
        files = [p for p in files if p.suffix != ".dat" and f"{p.name}.u8" not in names]
    return files


def read_source(number: int, source: Any) -> list[str]:
    """Every text of ``data.sources[number]``."""
    where = f"data.sources[{number}]"
    if not isinstance(source, (dict, DictConfig)):
        raise DataError(f"{where}: expected {{format: ..., path: ...}}, found {source!r}",
                        f"each source is {{format: {'|'.join(READERS)}, path: <a file or folder>}}")
    fmt, raw_path = str(source.get("format")), source.get("path")
    if fmt not in READERS:
        raise DataError(f"{where}: unknown format '{fmt}'", f"one of {', '.join(READERS)}")
    if raw_path is None:
        raise DataError(f"{where}: no path", f"set {where}.path=<a {fmt} file or folder>")
    path = Path(str(raw_path)).expanduser()
    if not path.exists():
        raise DataError(f"{where}: '{path}' not found", INSTALL.get(fmt, f"set {where}.path=<a file or folder>"))
    texts = [text for file in source_files(fmt, path) for text in READERS[fmt](file)]
    if not texts:
        hint = f"a wordnet folder holds {', '.join(WORDNET_FILES)}" if fmt == "wordnet" else None
        raise DataError(f"{where}: no text in '{path}' (format {fmt})", hint)
    return texts


def pack(ids: list[list[int]], source_of: np.ndarray, cls: int, sep: int, max_length: int):
    """(sequences [n, max_length], the source of each one's first token, the stream's length in tokens): the texts'
    token ids joined with a [SEP] between texts, cut into chunks of ``max_length - 2``, each as [CLS] chunk [SEP]."""
    lengths = np.array([len(row) + 1 if row else 0 for row in ids])  # each text and the [SEP] after it
    stream = np.fromiter((token for row in ids if row for token in (*row, sep)), dtype=np.int64, count=lengths.sum())
    stream_source = np.repeat(source_of, lengths)
    stream, stream_source = stream[:-1], stream_source[:-1]  # [SEP] between texts, not after the last
    width = max_length - 2
    n = len(stream) // width  # the last, short chunk is dropped
    body = torch.from_numpy(stream[:n * width].reshape(n, width))
    sequences = torch.cat([torch.full((n, 1), cls), body, torch.full((n, 1), sep)], dim=1)
    return sequences, stream_source[:n * width:width], len(stream)


class PackedSequences(Dataset):
    """``epoch_size`` of the packed sequences an epoch, drawn per (split seed, run seed, epoch); see the module doc."""

    needs_epoch = True

    def __init__(self, sequences: torch.Tensor, epoch_size: int, seeds: tuple[int, int]):
        self.sequences, self.epoch_size, self.seeds = sequences, epoch_size, seeds
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.epoch_size

    def order(self, epoch: int) -> np.ndarray:
        """Packed sequence number of each sample of the epoch (the permutation, wrapped to ``epoch_size``)."""
        if self._perm is None or self._perm[0] != epoch:
            perm = np.random.default_rng([*self.seeds, epoch]).permutation(len(self.sequences))
            self._perm = (epoch, perm[np.arange(self.epoch_size) % len(perm)])
        return self._perm[1]

    def __getitems__(self, items: list) -> dict:
        pairs = [tuple(item) if isinstance(item, (tuple, list)) else (0, int(item)) for item in items]
        epoch = pairs[0][0]
        if any(e != epoch for e, _ in pairs):
            raise ValueError("a batch mixes epochs")  # cannot happen with EpochTaggedSampler
        rows = torch.from_numpy(self.order(epoch)[[i for _, i in pairs]])
        input_ids = self.sequences[rows]
        return {"inputs": {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}, "index": rows}

    def __getitem__(self, item) -> dict:
        return self.__getitems__([item])


@DATASETS.register("general_text")
class GeneralTextDataModule(ZooDataModule):
    """``kind = "unlabelled_text"``: data for distillation stages only (``zoo.kinds.STAGE_ONLY_KINDS``: nothing is
    evaluated, exported or ranked on it, so it has no train/val/test split of that sort, only ``train``)."""

    name = "general_text"
    kind = "unlabelled_text"
    num_classes = None
    input_shape = ()
    transform_fingerprint = None  # the samples behind an index change every epoch: no teacher-output cache

    def __init__(self, cfg, shuffle_seed: int = 0):
        from zoo.archs.text import load_tokenizer

        super().__init__(cfg, shuffle_seed)
        self.vocabulary, self.max_length = str(cfg.tokenizer), int(cfg.max_length)
        epoch_size, seed = int(cfg.epoch_size), int(cfg.split_seed)
        if self.max_length < 3:
            raise DataError(f"data.max_length={self.max_length}: a packed sequence needs [CLS], a token and [SEP]",
                            "set data.max_length >= 3")
        if epoch_size < 1:
            raise DataError(f"data.epoch_size={epoch_size}: an epoch draws at least one sequence",
                            "set data.epoch_size >= 1")
        if cfg.max_texts is not None and int(cfg.max_texts) < 1:
            raise DataError(f"data.max_texts={cfg.max_texts}: read at least one text", "null reads them all")
        if not cfg.sources:
            raise DataError("data.sources is empty: no text to read", "list {format: wordnet|fortune|lines, path: ...}")
        per_source = [read_source(number, source) for number, source in enumerate(cfg.sources)]
        source_of = np.repeat(np.arange(len(per_source)), [len(texts) for texts in per_source])
        texts = [text for texts in per_source for text in texts]
        if cfg.max_texts is not None and int(cfg.max_texts) < len(texts):
            keep = np.sort(np.random.default_rng(seed).choice(len(texts), int(cfg.max_texts), replace=False))
            texts, source_of = [texts[i] for i in keep], source_of[keep]
        tokenizer = load_tokenizer(self.vocabulary)
        # verbose=False: the warning about texts longer than the model's maximum does not apply before packing;
        # no masks or type ids: a quarter of the time, and packing needs neither
        ids = tokenizer(texts, add_special_tokens=False, verbose=False, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
        sequences, first_source, self.num_tokens = pack(ids, source_of, tokenizer.cls_token_id,
                                                        tokenizer.sep_token_id, self.max_length)
        if len(sequences) == 0:
            raise DataError(f"the texts of data.sources give {self.num_tokens} tokens, fewer than one sequence of "
                            f"data.max_length - 2 = {self.max_length - 2}",
                            "add sources, raise data.max_texts or lower data.max_length")
        starts = np.bincount(first_source, minlength=len(per_source))
        self.sources = [{"format": str(source["format"]), "path": str(source["path"]),
                         "texts": int((source_of == number).sum()), "sequences": int(starts[number])}
                        for number, source in enumerate(cfg.sources)]
        self.num_texts = len(texts)
        self.splits = {"train": PackedSequences(sequences, epoch_size, (seed, int(shuffle_seed)))}
        self.fingerprint = fingerprint(sequences, np.array([epoch_size, seed]))

    def split_info(self) -> dict[str, Any]:
        """Adds the corpus: texts and tokens read, packed sequences, and per source the texts read and the
        sequences that begin in its text."""
        return {**super().split_info(), "texts": self.num_texts, "tokens": self.num_tokens,
                "sequences": len(self.splits["train"].sequences), "sources": self.sources}

    def val_dataloader(self):
        """No batches: unlabelled text has nothing to validate (a stage on it skips validation, even a smoke run's)."""
        return []

    def test_dataloader(self):
        raise DataError("general_text has only a train split (unlabelled text for distillation stages)",
                        "validate and test on the task's own data")
