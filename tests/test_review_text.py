"""The LELP paper's text sets in their published formats (Amazon Reviews JSONL, Sentiment140 CSV): readers with
errors naming file and line, classes as lists or groups of raw labels, and both paper tasks composed and trained
for a step with tiny random ALBERTs (the real ones come from the Hub, which tests never reach)."""

import csv
import json
import random

import pytest
from omegaconf import OmegaConf

from zoo.config import compose
from zoo.errors import ConfigError, DataError
from zoo.registry import DATASETS

GOOD, BAD = ["great", "love", "perfect", "works"], ["broken", "refund", "awful", "never"]


def review(stars: int, rng: random.Random) -> str:
    words = rng.choices(GOOD if stars > 3 else BAD, k=5) + rng.choices(["box", "price", "cable"], k=2)
    return " ".join(words)


def write_amazon(path, per_star=30, extra_lines=()):
    """JSONL as Amazon Reviews 2023 ships it (rating as a float, title, text, ids we do not read)."""
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as handle:
        for stars in range(1, 6):
            for i in range(per_star):
                handle.write(json.dumps({"rating": float(stars), "title": f"t{i}", "text": review(stars, rng),
                                         "asin": f"B{i:09d}", "helpful_vote": 0}) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def write_sentiment140(path, per_class=60, extra_rows=()):
    """The training CSV's format: no header, latin-1, polarity,id,date,query,user,text."""
    rng = random.Random(0)
    with open(path, "w", encoding="latin-1", newline="") as handle:
        out = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for polarity in ("0", "4"):
            for i in range(per_class):
                text = review(5 if polarity == "4" else 1, rng) + " café"
                out.writerow([polarity, str(1467810369 + i), "Mon Apr 06 22:19:45 PDT 2009", "NO_QUERY", f"u{i}", text])
        for row in extra_rows:
            out.writerow(row)
    return path


def data(task, path, overrides=(), **extra):
    cfg = compose(task, list(overrides)).data
    for key, value in {"path": str(path), "tokenizer": "minilm", "train_subset": None, **extra}.items():
        OmegaConf.update(cfg, key, value, merge=False)  # classes may change from a list to a mapping
    return DATASETS.get(cfg.name)(cfg)


def test_amazon_reviews_five_stars_or_grouped_into_two_classes(tmp_path):
    path = write_amazon(tmp_path / "r.jsonl")
    five = data("lelp_amazon_reviews", path)
    assert five.num_classes == 5 and five.classes == ["1", "2", "3", "4", "5"]
    assert sum(five.split_info()["sizes"].values()) == 150
    binary = data("lelp_amazon_reviews", path, ["data=amazon_reviews_bin"])
    assert binary.classes == ["negative", "positive"] and sum(binary.split_info()["sizes"].values()) == 120
    titled = data("lelp_amazon_reviews", path, text_fields=["title", "text"])
    assert titled.fingerprint != five.fingerprint  # the title is in the text


@pytest.mark.parametrize("line, message", [
    ('{"rating": 5.0, "text": "ok"', r"r.jsonl:151: not a JSON object"),
    ('{"text": "no stars"}', r"r.jsonl:151: missing rating"),
    ('{"rating": 4.5, "text": "half a star"}', r"r.jsonl:151: rating 4.5 is not a whole number of stars"),
    ('[5, "a list"]', r"r.jsonl:151: expected a JSON object, found list"),
])
def test_a_malformed_review_names_file_and_line(tmp_path, line, message):
    with pytest.raises(DataError, match=message):
        data("lelp_amazon_reviews", write_amazon(tmp_path / "r.jsonl", extra_lines=[line]))


def test_sentiment140_maps_polarity_and_reads_latin1(tmp_path):
    dm = data("lelp_sentiment140", write_sentiment140(tmp_path / "s.csv", extra_rows=[
        ["2", "1", "d", "NO_QUERY", "u", "a neutral tweet, dropped by the binary classes"]]))
    assert dm.classes == ["negative", "positive"] and sum(dm.split_info()["sizes"].values()) == 120


@pytest.mark.parametrize("row, message", [
    (["4", "1", "d", "NO_QUERY", "u"], r"s.csv:121: expected 6 fields"),
    (["1", "1", "d", "NO_QUERY", "u", "x"], r"s.csv:121: polarity '1' is not one of 0, 2, 4"),
])
def test_a_malformed_sentiment140_row_names_file_and_line(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        data("lelp_sentiment140", write_sentiment140(tmp_path / "s.csv", extra_rows=[row]))


def test_classes_that_name_unknown_or_shared_labels_are_one_line_errors(tmp_path):
    path = write_sentiment140(tmp_path / "s.csv")
    with pytest.raises(DataError, match=r"data.classes: unknown sentiment140 label '1' \(class 'negative'\)"):
        data("lelp_sentiment140", path, classes={"negative": [1], "positive": [4]})
    with pytest.raises(DataError, match=r"data.classes: the label '0' is in two classes"):
        data("lelp_sentiment140", path, classes={"negative": [0], "positive": [0, 4]})
    with pytest.raises(DataError, match=r"give at least two classes"):
        data("lelp_sentiment140", path, classes=[4])
    with pytest.raises(DataError, match=r"sentiment140 file '.*missing.csv' not found"):
        data("lelp_sentiment140", tmp_path / "missing.csv")


def test_the_paper_models_come_from_the_hub_and_say_so_in_one_line(tmp_path):
    from zoo.archs import create

    with pytest.raises(ConfigError, match=r"albert-xxlarge-v2 weights cannot be loaded") as error:
        create("albert-xxlarge-v2.classifier", 5, (), pretrained=True)
    assert "Hugging Face Hub" in error.value.hint
    with pytest.raises(ConfigError, match=r"tokenizer 'albert/albert-base-v2' cannot be loaded"):
        data("lelp_sentiment140", write_sentiment140(tmp_path / "s.csv"), tokenizer="albert/albert-base-v2")


TINY = ["trainer=cpu", "data.tokenizer=minilm", "data.train_subset=null", "trainer.fast_dev_run=true",
        "trainer.enable_progress_bar=false", "student.arch=albert-tiny.classifier", "student.pretrained=false",
        "teacher.arch=albert-tiny.classifier",
        "teacher.recipe.pretrained=false", "teacher.recipe.epochs=1", "method.subclasses=2"]


@pytest.mark.parametrize("task, write", [("lelp_amazon_reviews", write_amazon),
                                         ("lelp_sentiment140", write_sentiment140)])
def test_the_paper_tasks_compose_and_train_a_step_with_tiny_alberts(tmp_path, runs, task, write):
    from zoo.train import train

    raw = compose(task)
    assert raw.student.arch == "albert-base-v2.classifier" and raw.teacher.arch == "albert-xxlarge-v2.classifier"
    assert raw.teacher.recipe.pretrained and raw.student.pretrained and raw.trainer.accelerator == "gpu"
    cfg = compose(task, [f"data.path={write(tmp_path / 'data')}", *TINY, *runs])
    record = train(cfg, say=lambda *_: None).record
    assert record.task == task and record.method == "lelp" and record.data["kind"] == "text_classification"
    assert 0.0 <= record.metrics["test/acc"] <= 1.0 and record.teacher_queries["forward_passes"] > 0


def test_a_text_model_reads_the_datas_tokenizer_or_says_why_not(tmp_path, runs):
    """The ALBERTs take their vocabulary from data.tokenizer; another one named for the student is refused."""
    from zoo.train import train

    cfg = compose("lelp_sentiment140", [f"data.path={write_sentiment140(tmp_path / 's.csv')}", *TINY, *runs,
                                        "+student.kwargs={tokenizer:'albert/albert-base-v2'}"])
    with pytest.raises(ConfigError, match=r"student.kwargs.tokenizer=albert/albert-base-v2 but data.tokenizer=minilm"):
        train(cfg, say=lambda *_: None)
