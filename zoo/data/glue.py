"""The GLUE benchmark's classification tasks, read from the TSV files its download script writes.

``data.path`` is one task's folder as ``download_glue_data.py`` leaves it (``glue_data/SST-2``): ``train.tsv`` and
``dev.tsv`` (MNLI: ``dev_matched.tsv``), UTF-8, tab-separated, no quoting (GLUE text holds quote characters, which
are plain text). Per task (``data.task``), the columns read, by header name where the file has a header:

- ``cola``: no header; 4 fields (source, label, original mark, sentence); label 0 unacceptable, 1 acceptable.
- ``sst2``: ``sentence``, ``label`` (0 negative, 1 positive).
- ``mrpc``: ``#1 String``, ``#2 String``, ``Quality`` (0 not equivalent, 1 equivalent).
- ``qqp``: ``question1``, ``question2``, ``is_duplicate`` (0, 1).
- ``mnli``: ``sentence1``, ``sentence2``, ``gold_label`` (entailment, neutral, contradiction); test is
  ``dev_matched.tsv``.
- ``qnli``: ``question``, ``sentence``, ``label``; ``rte``: ``sentence1``, ``sentence2``, ``label`` (entailment,
  not_entailment); ``wnli``: ``sentence1``, ``sentence2``, ``label`` (0 not entailment, 1 entailment).

STS-B is a regression task and is refused. Splits: ``train`` is ``train.tsv`` less a seeded ``val_fraction`` held
out as ``val`` (for choosing settings); ``test`` is the dev file, since GLUE's test labels are hidden: the zoo's
test numbers on GLUE are GLUE dev numbers. Pairs are tokenized as pairs, batches carry ``input_ids`` and
``attention_mask`` only (``zoo.data.labelled_text``). A missing file, a header without the task's columns, a row
with another number of fields or an unknown label is an error naming the file and line. One real file has such rows:
QQP's ``train.tsv`` holds a question broken over two lines (near line 97,931), which ``data.skip_malformed: true``
drops, as Hugging Face's GLUE loader does; the run record counts what was dropped (``skipped_rows``).
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.data.base import read_utf8
from zoo.data.labelled_text import LabelledTextDataModule, Text
from zoo.errors import DataError, did_you_mean
from zoo.registry import DATASETS


@dataclass(frozen=True)
class GlueTask:
    folder: str                          # the download script's folder name
    text: tuple[str, ...] | tuple[int]   # the sentence column(s): header names, or an index without a header
    label: str | int
    classes: dict[str, list[str]]        # class name -> raw label, in GLUE's label order
    fields: int = 0                      # the number of fields of a file without a header
    dev: str = "dev.tsv"

    @property
    def raw_labels(self) -> tuple[str, ...]:
        return tuple(raw for members in self.classes.values() for raw in members)


ENTAILMENT = {"entailment": ["entailment"], "not_entailment": ["not_entailment"]}
TASKS = {
    "cola": GlueTask("CoLA", (3,), 1, {"unacceptable": ["0"], "acceptable": ["1"]}, fields=4),
    "sst2": GlueTask("SST-2", ("sentence",), "label", {"negative": ["0"], "positive": ["1"]}),
    "mrpc": GlueTask("MRPC", ("#1 String", "#2 String"), "Quality",
                     {"not_equivalent": ["0"], "equivalent": ["1"]}),
    "qqp": GlueTask("QQP", ("question1", "question2"), "is_duplicate", {"not_duplicate": ["0"], "duplicate": ["1"]}),
    "mnli": GlueTask("MNLI", ("sentence1", "sentence2"), "gold_label",
                     {"entailment": ["entailment"], "neutral": ["neutral"], "contradiction": ["contradiction"]},
                     dev="dev_matched.tsv"),
    "qnli": GlueTask("QNLI", ("question", "sentence"), "label", ENTAILMENT),
    "rte": GlueTask("RTE", ("sentence1", "sentence2"), "label", ENTAILMENT),
    "wnli": GlueTask("WNLI", ("sentence1", "sentence2"), "label", {"not_entailment": ["0"], "entailment": ["1"]}),
}


def glue_task(name: str) -> GlueTask:
    if name == "stsb":
        raise DataError("stsb is a regression task; the zoo's text kind is classification",
                        f"data.task is one of {', '.join(TASKS)}")
    if name not in TASKS:
        raise DataError(f"data.task: unknown GLUE task '{name}'", did_you_mean(name, TASKS, "tasks"))
    return TASKS[name]


def read_glue(path: Path, task: GlueTask, skip_malformed: bool = False) -> tuple[list[Text], list[str], int]:
    """(texts or sentence pairs, raw labels, rows skipped) of one GLUE TSV file; a row with another number of fields
    is an error, or skipped and counted with ``skip_malformed``."""
    if not path.is_file():
        raise DataError(f"GLUE {task.folder} file '{path}' not found",
                        f"data.path is the {task.folder} folder that GLUE's download_glue_data.py writes, holding "
                        f"train.tsv and {task.dev}")
    lines = (line.removesuffix("\r") for line in read_utf8(path).split("\n"))
    rows = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    if isinstance(task.label, int):  # no header: columns by position
        columns, fields = [*task.text, task.label], task.fields
    else:
        header = next(rows, [])
        missing = [name for name in (*task.text, task.label) if name not in header]
        if missing:
            raise DataError(f"{path}:1: the header lacks {', '.join(missing)} (found {'|'.join(header)})",
                            f"GLUE {task.folder} files have the columns {', '.join((*task.text, task.label))}")
        columns, fields = [header.index(name) for name in (*task.text, task.label)], len(header)
    texts, labels, skipped = [], [], 0
    for row in rows:
        if not row:  # the file's last line end
            continue
        where = f"{path}:{rows.line_num}"
        if len(row) != fields:
            if skip_malformed:
                skipped += 1
                continue
            raise DataError(f"{where}: expected {fields} tab-separated fields, found {len(row)}",
                            "a text holding a line break splits its row (QQP's train.tsv has one such question); "
                            "data.skip_malformed=true drops such rows and counts them")
        *text, label = (row[column] for column in columns)
        if label not in task.raw_labels:
            raise DataError(f"{where}: unknown label '{label}'", f"GLUE {task.folder} labels are "
                                                                  f"{', '.join(task.raw_labels)}")
        texts.append(text[0] if len(text) == 1 else tuple(text))
        labels.append(label)
    return texts, labels, skipped


@DATASETS.register("glue")
class GlueDataModule(LabelledTextDataModule):
    name = "glue"

    def __init__(self, cfg, shuffle_seed: int = 0):
        self.task = glue_task(str(cfg.task))  # before the base reads: it names the files, columns and classes
        self.raw_labels = self.task.raw_labels
        self.skipped: dict[str, int] = {}  # file name -> malformed rows dropped (data.skip_malformed)
        super().__init__(cfg, shuffle_seed)

    def class_spec(self) -> dict[str, list[str]]:
        return self.task.classes

    def default_path(self) -> Path:
        raise DataError(f"data.path is null: GLUE's files are not shipped (task {self.cfg.task})",
                        f"download GLUE (download_glue_data.py) and set data.path=<its {self.task.folder} folder, "
                        f"holding train.tsv and {self.task.dev}>")

    def read_file(self, path: Path) -> tuple[list[Text], list[str]]:
        texts, labels, self.skipped[path.name] = read_glue(path, self.task, bool(self.cfg.skip_malformed))
        return texts, labels

    def read(self, path: Path) -> tuple[list[Text], list[str]]:
        return self.read_file(path / "train.tsv")

    def read_test(self, path: Path) -> tuple[list[Text], list[str]]:
        return self.read_file(path / self.task.dev)

    def split_info(self) -> dict[str, Any]:
        return {**super().split_info(), "task": str(self.cfg.task), "skipped_rows": self.skipped}
