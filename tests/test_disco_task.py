"""DiSCo through the spine: disco_mini and disco_topiocqa end to end (fast_dev_run), zoo index / zoo search.

Each run is a ``zoo`` command in its own process, as users run it. Inside the pytest process, where other tests
start pyserini's JVM in-process, Lightning training next to that JVM crashed with SIGSEGV; ``zoo`` itself keeps
the JVM out of training processes (``zoo.retrieval.lucene.in_child``).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo.data.trec import Doc, write_corpus_tsv
from zoo.records import read_record

pytest.importorskip("pyserini")
ROOT = Path(__file__).resolve().parents[1]


def zoo(*args: str, timeout: float | None = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def train(args: list[str]) -> Path:
    done = zoo("train", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    root = Path(next(a for a in args if a.startswith("run.root=")).split("=", 1)[1])
    return max(root.glob("*/*/record.json")).parent  # the newest run (ids sort by time)

TINY = ["student.arch=splade.tiny", "teacher.arch=splade.tiny", "teacher.recipe.epochs=1",
        "+teacher.recipe.limit_train_batches=2", "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false",
        "method.max_length_query=32", "method.max_length_doc=32", "data.negatives.count=3"]
METRICS = {"mrr@10", "ndcg@3", "recall@10", "recall@100"}


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory) -> Path:
    """One conv_mini build shared by the tests of this file (it is deterministic)."""
    return tmp_path_factory.mktemp("conv_mini")


@pytest.mark.slow  # about 2.5 min on 2 cores: teacher, student, Lucene index, search, eval
def test_disco_mini_end_to_end_then_index_and_search(runs, mini_root, tmp_path):
    run_dir = train(["task=disco_mini", *TINY, *runs, f"data.root={mini_root}"])
    record = read_record(run_dir / "record.json")
    assert record.method == "disco" and record.teachers[0].name == "splade.tiny"
    assert {f"{p}/{m}" for p in ("val", "test") for m in METRICS} == set(record.metrics)
    assert {f"test/{m}" for m in METRICS} == set(record.teacher_metrics)  # the teacher on rewrites
    assert all(0.0 <= v <= 1.0 for v in record.metrics.values())
    assert record.teacher_queries["forward_passes"] > 0  # online teacher scores on the rewrites

    out = tmp_path / "index"
    assert zoo("index", f"run={run_dir}", f"out={out}").returncode == 0
    assert json.loads((out / "zoo_index.json").read_text())["documents"] > 100
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\twhat does the shlex module do?\nq2\thow do i compute a hyperbolic tangent\n")
    trec = tmp_path / "run.trec"
    done = zoo("search", f"index={out}", f"run={run_dir}", f"queries={queries}", "k=5", f"out={trec}")
    assert done.returncode == 0 and "brute force" in done.stdout, done.stdout  # ~500 documents: auto's choice
    lines = trec.read_text().splitlines()
    assert {line.split()[0] for line in lines} <= {"q1", "q2"} and 0 < len(lines) <= 10
    assert all(len(line.split()) == 6 for line in lines)
    by_lucene = tmp_path / "lucene.trec"  # the engine forced: the same scores at every rank (the mini corpus has
    assert zoo("search", f"index={out}", f"run={run_dir}", f"queries={queries}", "k=5", f"out={by_lucene}",
               "engine=lucene").returncode == 0  # byte-identical duplicates, so tied documents may swap)
    assert ([(f[0], f[3], f[4]) for f in map(str.split, by_lucene.read_text().splitlines())]
            == [(f[0], f[3], f[4]) for f in map(str.split, lines)])
    done = zoo("eval", f"run={run_dir}")
    assert f"test/mrr@10: {record.metrics['test/mrr@10']:.4f}" in done.stdout, done.stderr[-2000:]
    done = zoo("export", f"run={run_dir}")  # the query encoder, sparse head in the graph, parity on test turns
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((run_dir / "export" / "splade" / "export.json").read_text())
    assert report["kind"] == "splade-query-encoder" and report["parity"]["texts"] > 32


@pytest.mark.slow  # about a minute: its own process, a teacher recipe and a full-corpus index
def test_disco_mini_baseline_arm_has_no_distillation(runs, mini_root):
    run_dir = train(["task=disco_mini", "method=splade_ce", *TINY, *runs, f"data.root={mini_root}"])
    record = read_record(run_dir / "record.json")
    assert record.method == "splade_ce"
    assert record.teacher_queries["forward_passes"] == 0  # the teacher gives documents, never scores
    assert "test/recall@10" in record.metrics


DENSE = ["method=dense_ce", "student.arch=dense.minilm", "student.pretrained=true", "method.init_from_teacher=false",
         "method.doc_encoder=student_copy"]


@pytest.mark.slow  # about 1.5 minutes: all-MiniLM-L6-v2 encodes the mini corpus three times (train, eval, index)
def test_dense_baseline_trains_evaluates_and_indexes_in_faiss(runs, mini_root, tmp_path):
    run_dir = train(["task=disco_mini", *TINY, *DENSE, *runs, f"data.root={mini_root}"])
    record = read_record(run_dir / "record.json")
    assert record.method == "dense_ce" and record.student.name == "dense.minilm"
    assert record.teacher_queries["forward_passes"] == 0  # the SPLADE teacher only mined the candidates
    # zoo eval rebuilds the document encoder as the student started (student_copy), not as it ended
    done = zoo("eval", f"run={run_dir}")
    assert f"test/mrr@10: {record.metrics['test/mrr@10']:.4f}" in done.stdout, done.stderr[-2000:]
    out = tmp_path / "dense_index"
    assert zoo("index", f"run={run_dir}", f"out={out}").returncode == 0
    assert json.loads((out / "zoo_index.json").read_text())["kind"] == "dense-flat-ip"
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\twhat does the shlex module do?\n")
    trec = tmp_path / "run.trec"
    assert zoo("search", f"index={out}", f"run={run_dir}", f"queries={queries}", "k=3", f"out={trec}").returncode == 0
    assert len(trec.read_text().splitlines()) == 3
    # the query encoder as ONNX, pooling and normalisation in the graph; it reproduces the torch query embedding
    assert zoo("export", f"run={run_dir}").returncode == 0
    from zoo.export.dense_onnx import OnnxDenseEncoder
    from zoo.runs import load_run

    report = json.loads((run_dir / "export" / "dense" / "export.json").read_text())
    assert report["parity"]["texts"] > 1 and report["parity"]["max_abs_diff"] <= 1e-4
    with torch.no_grad():
        ref = load_run(run_dir).student.encode(["what does the shlex module do?"]).numpy()
    deployed = OnnxDenseEncoder(run_dir / "export" / "dense").encode(["what does the shlex module do?"])
    assert abs(deployed - ref).max() < 1e-4


def reproduce_means(runs, tmp_path, task: str = "disco_mini") -> tuple[dict, dict]:
    """``zoo reproduce`` of the ce and disco arms (3 seeds; the dense arms are references): each arm's mean test
    MRR@10 and Recall@10, and the teacher's on rewrites. A failed run fails the test."""
    # No 10-minute cap: the whole reproduce takes most of an hour (the cap made this check time out, unseen, from
    # the day the end-to-end tests moved into their own processes)
    done = zoo("reproduce", f"task={task}", "seeds=3", "arms=ce,disco", *runs, timeout=3 * 3600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(next((tmp_path / "runs" / task).glob("reproduce-*.json")).read_text())
    records = [read_record(Path(path)) for path in summary["records"]]
    assert sorted(r.method for r in records) == ["disco"] * 3 + ["splade_ce"] * 3
    metrics = ("test/mrr@10", "test/recall@10")
    mean = {arm: {m: sum(r.metrics[m] for r in records if r.method == arm) / 3 for m in metrics}
            for arm in ("disco", "splade_ce")}
    return mean, {m: records[0].teacher_metrics[m] for m in metrics}


@pytest.mark.slow  # about 45 minutes on 2 cores: the teacher (about 5 min, once), then 3 seeds x 2 arms
def test_disco_beats_the_same_encoder_without_distillation_on_disco_mini(runs, tmp_path):
    """The first check: the disco student reading raw conversations beats splade_ce (the same encoder and
    candidates, no distillation) on mean test MRR@10 and Recall@10; the teacher on rewrites stays above both.
    Measured false (leaderboards/disco_mini.md, 2026-12-02: test MRR@10 0.555 against 0.625): with complete
    training judgements the exact qrels are the better signal. It xfails while that holds; the paper's regime is
    checked below."""
    mean, teacher = reproduce_means(runs, tmp_path)
    for metric, value in teacher.items():
        assert value > mean["disco"][metric], metric
    if any(mean["disco"][m] <= mean["splade_ce"][m] for m in teacher):
        pytest.xfail(f"disco does not beat splade_ce with complete judgements: {mean}")


@pytest.mark.slow  # about 75 minutes on one core: a teacher on the passage corpus (once), then 3 seeds x 2 arms
def test_disco_beats_splade_ce_with_one_judged_passage_per_train_turn(runs, tmp_path):
    """Issue 20's claim, in the regime DiSCo's gain comes from: training turns keep one judged passage, so
    relevant siblings are unjudged and CE trains them down while the teacher ranks them up. The premise is
    asserted: the teacher on rewrites beats both arms, and the training candidates hold unjudged relevant passages.
    Measured false on 2026-12-02 (leaderboards/disco_mini_sparse.md: test MRR@10 0.581 against 0.619), so the
    claim xfails while disco trails; the premise assertions fail the test outright."""
    mean, teacher = reproduce_means(runs, tmp_path, "disco_mini_sparse")
    for metric, value in teacher.items():
        assert value > max(mean["disco"][metric], mean["splade_ce"][metric]), metric
    summary = json.loads(next((tmp_path / "runs" / "disco_mini_sparse").glob("reproduce-*.json")).read_text())
    regime = read_record(Path(summary["records"][0])).data["unjudged_relevant"]
    assert regime["pools_holding_unjudged_relevant"] > 0.3 * regime["train_turns"], regime
    if any(mean["disco"][m] <= mean["splade_ce"][m] for m in teacher):
        pytest.xfail(f"disco does not beat splade_ce with one judged passage per train turn: {mean}")


def dpr_row(conv, turn, question, passage):
    return {"dataset": "topiocqa", "conv_id": conv, "turn_id": turn, "question": question, "answers": ["a"],
            "positive_ctxs": [{"title": f"Title {passage}", "text": "x", "passage_id": str(passage)}],
            "negative_ctxs": [], "hard_negative_ctxs": []}


@pytest.fixture
def topiocqa_root(tmp_path) -> Path:
    """Tiny files in TopiOCQA's real formats, laid out as disco_topiocqa expects under data.root."""
    folder = tmp_path / "topiocqa"
    folder.mkdir()
    train_rows = [dpr_row(1, 1, "who wrote dune", 11),
                  dpr_row(1, 2, "who wrote dune [SEP] frank herbert [SEP] when was it published", 12),
                  dpr_row(2, 1, "what is a lighthouse", 13), dpr_row(2, 2, "what is a lighthouse [SEP] a tower "
                                                                          "[SEP] how tall is it", 14)]
    dev_rows = [dpr_row(7, 1, "what is sushi", 21), dpr_row(7, 2, "what is sushi [SEP] a dish [SEP] where from", 22)]
    (folder / "train.json").write_text(json.dumps(train_rows))
    (folder / "dev.json").write_text(json.dumps(dev_rows))
    docs = [Doc(str(i), f"the passage number {i} about a city and a river", f"Title {i}") for i in range(10, 60)]
    write_corpus_tsv(docs, folder / "full_wiki_segments.tsv")
    ranking = {str(row): {str(d): 40.0 - d / 2 for d in range(10, 60)} for row in range(4)}  # DiSCo run.json
    (folder / "run_llama_mistral.json").write_text(json.dumps(ranking))
    return tmp_path


def test_disco_topiocqa_fast_dev_run_on_real_formats(runs, topiocqa_root):
    overrides = ["trainer=cpu", "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false",
                 "student.arch=splade.tiny", "teacher.arch=splade.tiny", f"data.root={topiocqa_root}",
                 "data.batch_size=2", "data.eval_batch_size=2", "data.negatives.count=4",
                 "method.max_length_query=32", "method.max_length_doc=32"]
    record = read_record(train(["task=disco_topiocqa", *overrides, *runs]) / "record.json")
    # training scores come from the run file; only the one validation batch (no run for dev) scores online
    assert record.teacher_queries["forward_passes"] <= 1
    assert {"val/mrr@10", "test/recall@100"} <= set(record.metrics)


def test_disco_topiocqa_missing_files_is_one_line(tmp_path, capsys):
    from zoo.cli import main

    assert main(["train", "task=disco_topiocqa", f"data.root={tmp_path}", "trainer=cpu"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "train.json" in err and "Traceback" not in err


def test_distillation_sampling_settings_keep_the_stored_teacher():
    """The teacher is trained before any teacher run exists: the rank window and the t+ rule cannot change it."""
    from types import SimpleNamespace

    from zoo.config import compose
    from zoo.recipes import stored_weights_key

    def key(*overrides):
        cfg = compose("disco_mini", list(overrides))
        return stored_weights_key(cfg, cfg.teacher.arch, cfg.teacher.recipe, SimpleNamespace(fingerprint="f"))

    assert key() == key("data.negatives.window=[3,50]") == key("data.negatives.positive_score=top")
    assert key() != key("teacher.recipe.epochs=2") != key("data.negatives.count=4")
    with_run_files = ("data.teacher_runs=[run.trec]",)  # with run files the teacher trains on, the window stays in
    assert key(*with_run_files) != key(*with_run_files, "data.negatives.window=[3,50]")
    # the fusion rule for unlisted docs matters with two run files only; skip (the old default) keeps the old key
    assert "teacher_missing" not in key()["data_cfg"]
    assert key(*with_run_files) == key(*with_run_files, "data.teacher_missing=skip")  # one file: nothing to fuse
    two_files = ("data.teacher_runs=[a.trec,b.trec]",)
    assert key(*two_files)["data_cfg"]["teacher_missing"] == "floor"  # the default now
    assert "teacher_missing" not in key(*two_files, "data.teacher_missing=skip")["data_cfg"]
