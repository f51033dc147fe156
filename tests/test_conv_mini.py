"""conv_mini: deterministic build, conversation-level splits, the ambiguity property, real-format round trip."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from zoo.config import compose
from zoo.data import conv_mini
from zoo.data.conversations import read_qrecc
from zoo.data.trec import iter_corpus, read_qrels
from zoo.errors import ConfigError, DataError
from zoo.registry import DATASETS

PARAMS = conv_mini.MiniParams()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return conv_mini.ensure(PARAMS, tmp_path_factory.mktemp("mini"))


def read_split(folder, name):
    return read_qrecc(folder / f"{name}.json", name, read_qrels(folder / f"qrels_{name}.txt"))


def test_two_builds_are_byte_identical(built, tmp_path):
    """A second build, in another process with another string-hash seed, writes the same bytes."""
    code = f"from zoo.data import conv_mini; conv_mini.ensure(conv_mini.MiniParams(), {str(tmp_path)!r})"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    again = tmp_path / built.name
    assert again.name == built.name
    files = sorted(p.name for p in built.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (built / name).read_bytes() == (again / name).read_bytes(), name
    manifest = json.loads((built / "MANIFEST.json").read_text())
    assert manifest["python"] and manifest["params"]["build_seed"] == 0 and len(manifest["fingerprint"]) == 64


def test_splits_are_disjoint_by_conversation_and_qrels_stay_in_their_split(built):
    convs, qids = {}, {}
    for name in ("train", "dev", "test"):
        cset = read_split(built, name)
        convs[name] = {c.conv_id for c in cset.conversations}
        qids[name] = set(cset.qids())
        assert set(read_qrels(built / f"qrels_{name}.txt")) == qids[name]  # every turn judged, no foreign qid
    assert not (convs["train"] & convs["dev"] or convs["train"] & convs["test"] or convs["dev"] & convs["test"])
    assert len(convs["dev"]) == len(convs["test"]) == 60 and len(convs["train"]) == 480


def test_round_trip_through_the_real_readers(built):
    docs = {doc.id: doc for doc in iter_corpus(built / "corpus.jsonl")}
    raw = json.loads((built / "dev.json").read_text())
    cset = read_split(built, "dev")
    for item, turn in zip(raw, cset.turns(), strict=True):
        assert (turn.utterance, turn.rewrite, turn.answer) == (item["Question"], item["Rewrite"], item["Answer"])
        assert [u.text for u in turn.history] == item["Context"]
        grades = cset.qrels[turn.qid]
        assert list(grades.values()).count(2) == 1 and set(grades) <= set(docs)
    assert docs["py:gzip.open"].title == "gzip.open" and "gzip" in docs["py:gzip"].text


def test_later_turns_need_their_context(built):
    """Measured on the written files: many later turns do not say which module they are about."""
    stats = json.loads((built / "MANIFEST.json").read_text())["stats"]
    assert stats == conv_mini.measure(built)  # the manifest's numbers come from the files
    assert stats["later_context_dependent"] > 0.6
    assert stats["later_name_ambiguous"] > 0.35
    assert stats["later_ambiguous_without_context"] > 0.5
    assert stats["bm25_success_at_1"]["rewrite"] > stats["bm25_success_at_1"]["utterance"] + 0.15
    assert min(stats["later_turn_types"].values()) >= 10  # every turn type occurs


def test_ambiguous_turn_example(built):
    """'its open function' fits the open() of many modules; only the history says which one."""
    cset = read_split(built, "train")
    turn = next(t for t in cset.turns() if "open" in t.utterance.split() and "module" not in t.utterance)
    target = next(doc for doc, grade in cset.qrels[turn.qid].items() if grade == 2)
    module = target.split(":")[1].split(".")[0]
    assert module not in turn.utterance and module in turn.rewrite
    assert any(module in u.text for u in turn.history)


def test_partial_and_corrupt_folders_are_detected(built, tmp_path):
    import shutil

    copy = tmp_path / built.name
    shutil.copytree(built, copy)
    with open(copy / "train.json", "a") as handle:
        handle.write(" ")
    with pytest.raises(DataError, match="does not match its sha256") as err:
        conv_mini.ensure(PARAMS, tmp_path)
    assert str(copy) in err.value.hint
    (copy / "MANIFEST.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt MANIFEST.json"):
        conv_mini.verify(copy)
    (copy / "MANIFEST.json").unlink()
    with pytest.raises(DataError, match="partial: no MANIFEST.json"):
        conv_mini.verify(copy)
    shutil.copy(built / "MANIFEST.json", copy / "MANIFEST.json")
    (copy / "dev.json").unlink()
    with pytest.raises(DataError, match="partial or has extra files"):
        conv_mini.verify(copy)


def test_data_module_yields_string_batches_without_dev_leak(built):
    cfg = OmegaConf.merge(compose("kd_digits", ["data=disco_mini"]).data,
                          {"root": str(built.parent), "negatives": {"count": 4}})
    dm = DATASETS.get("disco_mini")(cfg, shuffle_seed=1)
    assert dm.fingerprint == json.loads((built / "MANIFEST.json").read_text())["fingerprint"][:16]
    sizes = dm.split_info()["sizes"]
    assert sizes["train"] > 2000 and sizes["val"] > 200 and sizes["test"] > 200
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["conversation"]) == 10 and batch["teacher_scores"] is None
    assert all(len(n) == 4 for n in batch["negatives"])
    for pos, negs in zip(batch["positive_id"], batch["negative_ids"], strict=True):
        assert pos not in negs
    train_qids = set(dm.qrels("train"))
    val = dm.splits["val"]
    for i in range(len(val)):
        example = val[i]
        assert example["qid"] not in train_qids and dm.qrels("val")[example["qid"]][example["positive_id"]] >= 1
    assert dm.queries("val", "rewrite").keys() == dm.qrels("val").keys()


def test_whole_documents_keep_the_folder_key_of_sets_built_before_passages_existed():
    assert PARAMS.passage_words == 0 and PARAMS.key().endswith("-ff2a21b038")


def test_passages_are_near_equal_consecutive_cuts_under_the_document_title():
    doc = conv_mini.Doc("py:m.f", " ".join(f"w{i}" for i in range(65)), "m.f")
    cut = conv_mini.passages(doc, 30)
    assert [p.id for p in cut] == ["py:m.f#1", "py:m.f#2", "py:m.f#3"] and {p.title for p in cut} == {"m.f"}
    assert [len(p.text.split()) for p in cut] == [22, 21, 22] and " ".join(p.text for p in cut) == doc.text
    assert conv_mini.passages(conv_mini.Doc("py:m.g", "short text", "m.g"), 30)[0].id == "py:m.g#1"


def test_judgements_of_a_turn_over_passages_and_over_whole_documents():
    target = conv_mini.Entry("random", "choice", "function", conv_mini.Doc("py:random.choice", "a b c", "t"), "a")
    pieces = {"py:random.choice": [conv_mini.Doc("py:random.choice#1", "a"), conv_mini.Doc("py:random.choice#2", "b")],
              "py:secrets.choice": [conv_mini.Doc("py:secrets.choice#1", "a b c")]}
    duplicates = ["py:random.choice", "py:secrets.choice"]
    assert conv_mini.judgements(target, duplicates, {}) == {"py:random.choice": 2, "py:secrets.choice": 1}
    assert conv_mini.judgements(target, duplicates, pieces) == {"py:random.choice#1": 2, "py:random.choice#2": 1,
                                                                 "py:secrets.choice#1": 1}


def test_sparse_variant_keeps_one_judged_passage_per_train_turn_and_counts_the_rest(built):
    cfg = OmegaConf.merge(compose("kd_digits", ["data=disco_mini_sparse"]).data, {"root": str(built.parent)})
    dm = DATASETS.get("disco_mini")(cfg, shuffle_seed=0)
    assert all(list(grades.values()) == [2] for grades in dm.qrels("train").values())
    complete = read_qrels(Path(dm.sources.splits["train"].qrels))
    for qid, hidden in dm.unjudged.items():
        assert hidden == {doc for doc, rel in complete[qid].items() if rel == 1}
    assert any(rel == 1 for grades in dm.qrels("test").values() for rel in grades.values())  # test stays complete
    measured = dm.unjudged_relevant()
    assert measured["turns_with_unjudged_relevant"] == len(dm.unjudged) > 0.3 * measured["train_turns"]
    with pytest.raises(ConfigError, match="train_judgements must be one of all, top, got 'one'"):
        DATASETS.get("disco_mini")(OmegaConf.merge(cfg, {"train_judgements": "one"}), shuffle_seed=0)
