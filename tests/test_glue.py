"""GLUE from its download script's TSVs: small files in each task's real layout (SST-2, MRPC, MNLI, CoLA), labels by
task, sentence pairs tokenized as pairs, train/val cut from train.tsv with the dev file as test, and one-line errors
naming file and line."""

import pytest
from omegaconf import OmegaConf

from zoo.archs.text import load_tokenizer
from zoo.config import compose
from zoo.errors import DataError
from zoo.registry import DATASETS

MNLI_TRAIN = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
MNLI_DEV = [*MNLI_TRAIN[:11], "label2", "label3", "label4", "label5", "gold_label"]
NLI = ("entailment", "neutral", "contradiction")


def write_tsv(path, rows, extra_rows=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in [*rows, *extra_rows]), encoding="utf-8")


def sst2(folder, n_train=20, n_dev=6, extra_rows=()):
    """SST-2: header sentence, label; quote characters are plain text."""
    def rows(n):
        return [["sentence", "label"]] + [[f'a "great" film , it \'s {i} ' if i % 2 else f"dull and long {i} ",
                                            str(i % 2)] for i in range(n)]
    write_tsv(folder / "train.tsv", rows(n_train), extra_rows)
    write_tsv(folder / "dev.tsv", rows(n_dev))
    return folder


def mrpc(folder, n_train=10, n_dev=4):
    """MRPC as download_glue_data.py copies it: the original header, byte-order mark included."""
    def rows(n):
        return [["\ufeffQuality", "#1 ID", "#2 ID", "#1 String", "#2 String"]] + [
            [str(i % 2), str(1000 + i), str(2000 + i), f"The company said profits rose {i} percent .",
             "Profits fell , the firm said ." if i % 2 == 0 else f"Profits rose {i} percent , it said ."]
            for i in range(n)]
    write_tsv(folder / "train.tsv", rows(n_train))
    write_tsv(folder / "dev.tsv", rows(n_dev))
    return folder


def mnli(folder, n_train=12, n_dev=6):
    def row(i, header):
        parse = "( ( The cat ) ( sat . ) )"
        return [str(i), str(i), f"{i}e", "fiction", parse, parse, parse, parse, f"The cat {i} sat on the mat .",
                "A cat sat .", *[NLI[i % 3]] * (len(header) - 10)]
    write_tsv(folder / "train.tsv", [MNLI_TRAIN] + [row(i, MNLI_TRAIN) for i in range(n_train)])
    write_tsv(folder / "dev_matched.tsv", [MNLI_DEV] + [row(i, MNLI_DEV) for i in range(n_dev)])
    return folder


def cola(folder, n_train=10, n_dev=4):
    """CoLA: no header; source, label, original mark (* when unacceptable), sentence."""
    def rows(n):
        return [["gj04", str(i % 2), "" if i % 2 else "*", "The sailors rode the breeze clear of the rocks ."
                 if i % 2 else "The more we study verbs , the crazier they get get ."] for i in range(n)]
    write_tsv(folder / "train.tsv", rows(n_train))
    write_tsv(folder / "dev.tsv", rows(n_dev))
    return folder


def qqp(folder, n_train=10, n_dev=4):
    """QQP, with the real train.tsv's flaw: a question holding a line break, which splits its row in two."""
    header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    def rows(n):
        return [header] + [[str(i), str(2 * i), str(2 * i + 1), f"How do I learn {i} languages?",
                            "How can I learn languages fast?", str(i % 2)] for i in range(n)]
    write_tsv(folder / "train.tsv", rows(n_train), [["97931", "1", "2", "Was Muhammad a real historical figure?", '"'],
                                                    ["What is the evidence for his existence?", "0"]])
    write_tsv(folder / "dev.tsv", rows(n_dev))
    return folder


def glue(task, folder, **extra):
    cfg = compose("kd_digits", ["data=glue"]).data
    for key, value in {"task": task, "path": str(folder) if folder else None, **extra}.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return DATASETS.get("glue")(cfg)


def test_sst2_labels_splits_and_quote_characters(tmp_path):
    dm = glue("sst2", sst2(tmp_path / "SST-2"))
    assert dm.kind == "text_classification" and dm.classes == ["negative", "positive"] and dm.num_classes == 2
    assert dm.split_info()["sizes"] == {"train": 18, "val": 2, "test": 6} and dm.split_info()["task"] == "sst2"
    test = dm.splits["test"]
    assert test.targets.tolist() == [0, 1, 0, 1, 0, 1]  # the dev file, in order
    assert load_tokenizer("minilm").decode(test.ids[1]) == '[CLS] a " great " film, it \' s 1 [SEP]'
    assert glue("sst2", tmp_path / "SST-2", split_seed=1).fingerprint != dm.fingerprint  # another val


def test_mrpc_pairs_are_tokenized_as_pairs_and_batches_carry_no_type_ids(tmp_path):
    dm = glue("mrpc", mrpc(tmp_path / "MRPC"))
    assert dm.classes == ["not_equivalent", "equivalent"]
    batch = next(iter(dm.eval_loader("test")))
    assert set(batch["inputs"]) == {"input_ids", "attention_mask"} and batch["targets"].tolist() == [0, 1, 0, 1]
    tokenizer = load_tokenizer("minilm")
    assert tokenizer.decode(dm.splits["test"].ids[0]) == ("[CLS] the company said profits rose 0 percent. [SEP] "
                                                          "profits fell, the firm said. [SEP]")
    short = glue("mrpc", tmp_path / "MRPC", max_length=12).splits["test"].ids[0]
    assert len(short) == 12 and tokenizer.decode(short).count("[SEP]") == 2  # truncated as a pair


def test_mnli_reads_columns_by_name_and_tests_on_dev_matched(tmp_path):
    dm = glue("mnli", mnli(tmp_path / "MNLI"))
    assert dm.classes == list(NLI) and dm.num_classes == 3
    assert dm.splits["test"].targets.tolist() == [0, 1, 2, 0, 1, 2]
    sizes = dm.split_info()["sizes"]
    assert sizes["train"] + sizes["val"] == 12 and sizes["val"] == 1 and sizes["test"] == 6
    assert load_tokenizer("minilm").decode(dm.splits["test"].ids[2]).startswith("[CLS] the cat 2 sat on the mat")


def test_cola_has_no_header_and_reads_columns_by_position(tmp_path):
    dm = glue("cola", cola(tmp_path / "CoLA"))
    assert dm.classes == ["unacceptable", "acceptable"] and dm.splits["test"].targets.tolist() == [0, 1, 0, 1]
    assert load_tokenizer("minilm").decode(dm.splits["test"].ids[1]).startswith("[CLS] the sailors rode")


def test_rows_broken_by_a_line_break_are_refused_or_skipped_and_counted(tmp_path):
    folder = qqp(tmp_path / "QQP")
    with pytest.raises(DataError, match=r"QQP/train.tsv:12: expected 6 tab-separated fields, found 5") as error:
        glue("qqp", folder)
    assert "data.skip_malformed=true" in error.value.hint
    dm = glue("qqp", folder, skip_malformed=True)
    info = dm.split_info()
    assert info["skipped_rows"] == {"train.tsv": 2, "dev.tsv": 0} and sum(info["sizes"].values()) == 14
    assert dm.classes == ["not_duplicate", "duplicate"] and dm.splits["test"].targets.tolist() == [0, 1, 0, 1]


def test_bad_glue_files_and_tasks_are_one_line_errors(tmp_path):
    folder = sst2(tmp_path / "SST-2")
    (tmp_path / "bad_header").mkdir()
    (tmp_path / "bad_header" / "train.tsv").write_text("text\tlabel\nok\t1\n", encoding="utf-8")
    (mnli(tmp_path / "MNLI") / "dev_matched.tsv").unlink()
    with open(cola(tmp_path / "cola_few") / "train.tsv", "a", encoding="utf-8") as handle:
        handle.write("gj04\t1\tThe sentence lost its mark column .\n")
    for (task, path), message in [
        (("sst2", sst2(tmp_path / "few", extra_rows=[["no label"]])), r"few/train.tsv:22: expected 2 tab-separated"),
        (("sst2", sst2(tmp_path / "label", extra_rows=[["fine", "2"]])), r"label/train.tsv:22: unknown label '2'"),
        (("sst2", tmp_path / "bad_header"), r"bad_header/train.tsv:1: the header lacks sentence \(found text\|label\)"),
        (("cola", tmp_path / "cola_few"), r"cola_few/train.tsv:11: expected 4 tab-separated fields, found 3"),
        (("mnli", tmp_path / "MNLI"), r"GLUE MNLI file '.*MNLI/dev_matched.tsv' not found"),
        (("stsb", folder), r"^stsb is a regression task; the zoo's text kind is classification$"),
        (("sst-2", folder), r"data.task: unknown GLUE task 'sst-2'"),
        (("sst2", None), r"data.path is null: GLUE's files are not shipped"),
    ]:
        with pytest.raises(DataError, match=message) as error:
            glue(task, path)
        assert "\n" not in str(error.value), message
    with pytest.raises(DataError) as error:
        glue("sst-2", folder)
    assert "did you mean 'sst2'" in error.value.hint
