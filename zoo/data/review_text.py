"""The LELP paper's text sets, read from their published files (neither ships offline: point ``data.path`` at it).

- ``amazon_reviews``: Amazon Reviews 2023 (McAuley Lab), one JSON object per line with a star ``rating``
  (1.0-5.0) and the review ``text`` (``data.text_fields`` joins more fields, e.g. ``[title, text]``); raw labels
  ``1``..``5``. The 5-class task lists them all; a binary one maps ``{negative: [1, 2], positive: [4, 5]}``.
- ``sentiment140``: ``training.1600000.processed.noemoticon.csv`` (Go et al., 2009): no header, latin-1, six
  fields ``polarity, id, date, query, user, text`` with polarity 0 (negative), 2 (neutral, test file only) or
  4 (positive); raw labels ``0``, ``2``, ``4``.

A line that does not parse, lacks a field or carries an unknown label is an error naming the file and line.
Split, tokenization and batches: ``zoo.data.labelled_text``.
"""

import csv
import json
from pathlib import Path

from zoo.data.labelled_text import LabelledTextDataModule
from zoo.errors import DataError
from zoo.registry import DATASETS

STARS = ("1", "2", "3", "4", "5")
POLARITIES = ("0", "2", "4")
SENTIMENT140_FIELDS = ("polarity", "id", "date", "query", "user", "text")


def _exists(path: Path, dataset: str) -> None:
    if not path.is_file():
        raise DataError(f"{dataset} file '{path}' not found", f"set data.path=<the {dataset} file>")


def read_amazon_reviews(path: Path, text_fields: tuple[str, ...] = ("text",)) -> tuple[list[str], list[str]]:
    """(texts, star labels '1'..'5') of every line of an Amazon Reviews JSONL file."""
    _exists(path, "amazon_reviews")
    texts, stars = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not a JSON object ({err.msg})") from err
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, found {type(record).__name__}")
            missing = [key for key in ("rating", *text_fields) if key not in record]
            if missing:
                raise DataError(f"{where}: missing {', '.join(missing)}",
                                "each review needs a rating and the fields named by data.text_fields")
            rating = record["rating"]
            if isinstance(rating, bool) or not isinstance(rating, (int, float)) or rating not in range(1, 6):
                raise DataError(f"{where}: rating {rating!r} is not a whole number of stars from 1 to 5")
            texts.append(" ".join(str(record[key]) for key in text_fields if record[key]))
            stars.append(str(int(rating)))
    return texts, stars


def read_sentiment140(path: Path) -> tuple[list[str], list[str]]:
    """(texts, polarity labels '0' / '2' / '4') of every row of a Sentiment140 CSV."""
    _exists(path, "sentiment140")
    texts, polarities = [], []
    with open(path, encoding="latin-1", newline="") as handle:
        rows = csv.reader(handle)
        for row in rows:
            where = f"{path}:{rows.line_num}"
            if len(row) != len(SENTIMENT140_FIELDS):
                raise DataError(f"{where}: expected {len(SENTIMENT140_FIELDS)} fields "
                                f"({', '.join(SENTIMENT140_FIELDS)}), found {len(row)}")
            if row[0] not in POLARITIES:
                raise DataError(f"{where}: polarity '{row[0]}' is not one of {', '.join(POLARITIES)}")
            texts.append(row[5])
            polarities.append(row[0])
    return texts, polarities


@DATASETS.register("amazon_reviews")
class AmazonReviewsDataModule(LabelledTextDataModule):
    name = "amazon_reviews"
    raw_labels = STARS

    def read(self, path: Path) -> tuple[list[str], list[str]]:
        return read_amazon_reviews(path, tuple(str(key) for key in self.cfg.get("text_fields", ["text"])))


@DATASETS.register("sentiment140")
class Sentiment140DataModule(LabelledTextDataModule):
    name = "sentiment140"
    raw_labels = POLARITIES

    def read(self, path: Path) -> tuple[list[str], list[str]]:
        return read_sentiment140(path)
