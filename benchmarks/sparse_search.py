"""Lucene impact search (pyserini/Anserini) vs the brute-force torch sparse scorer, same quantised weights.

    python benchmarks/sparse_search.py --run runs/disco_mini/<id>     # the mini index, the run's test queries
    python benchmarks/sparse_search.py                                 # 20k synthetic docs, 200 queries, k=1000
    python benchmarks/sparse_search.py --docs 200000 --queries 500 --threads 4 --out bench.json

With ``--run``: the run's collection encoded by its frozen document encoder into an impact index (what
``zoo index`` builds; ``--index DIR`` reuses one built earlier), and the conversations of ``--split`` encoded by
the run's student (the query encoder), quantised with the index's scale.
Synthetic: SPLADE-like vectors, |V| = 30522, a Zipf-like term popularity (p(rank r) ∝ 1/(r + 10)), up to 120
terms per document and 30 per query, integer weights 1..300.
Both arms must return the same top-10 scores for every query (checked). The two arms alternate ``--repeats``
times; the median queries/s of each and their ratio are printed.
"""

import argparse
import itertools
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

VOCAB = 30522
CUM = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(VOCAB)))  # Zipf-like term popularity


def vector(rng: random.Random, terms: int) -> dict[str, int]:
    ids = set(rng.choices(range(VOCAB), cum_weights=CUM, k=terms))
    return {f"t{i}": rng.randint(1, 300) for i in ids}


def synthetic_index(root: Path, args) -> dict[str, dict[str, int]]:
    """Writes synthetic vectors and their impact index under ``root``; returns the query weights."""
    from zoo.retrieval.common import META
    from zoo.retrieval.impact import index_vectors

    rng = random.Random(args.seed)
    (root / "vectors").mkdir()
    with open(root / "vectors" / "docs-00000.jsonl", "w") as handle:
        for i in range(args.docs):
            handle.write(json.dumps({"id": f"d{i}", "contents": "", "vector": vector(rng, 120)}) + "\n")
    index_vectors(root / "vectors", root / "lucene", threads=args.threads)
    (root / META).write_text(json.dumps({"kind": "splade-impact", "quant_scale": 1.0}))
    return {f"q{i}": vector(rng, 30) for i in range(args.queries)}


def run_index(root: Path, args) -> tuple[Path, dict[str, dict[str, int]]]:
    """The run's corpus index (built under ``root`` unless ``--index``) and its split's encoded queries."""
    import torch

    from zoo.retrieval.common import read_meta
    from zoo.retrieval.engines import build_index
    from zoo.retrieval.impact import encode_queries
    from zoo.retrieval.run_encoders import document_encoder
    from zoo.runs import load_run

    torch.set_num_threads(args.threads)
    loaded = load_run(Path(args.run))
    index = Path(args.index) if args.index else None
    if index is None:
        index = build_index(document_encoder(loaded), loaded.datamodule.collection(), root / "index", progress=False,
                            max_length=loaded.cfg.data.get("eval_max_length_doc"))
    queries = loaded.datamodule.queries(args.split, "conversation")
    weights = encode_queries(loaded.student.eval(), queries, float(read_meta(index)["quant_scale"]),
                             loaded.cfg.data.get("eval_max_length_query"))
    return index, weights


def main() -> None:
    from zoo.retrieval.impact import ImpactSearcher
    from zoo.retrieval.lucene import ensure_jvm
    from zoo.retrieval.sparse import SparseIndex

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a disco_* run folder: benchmark on its corpus and its split's queries")
    parser.add_argument("--index", help="with --run: an index built earlier by zoo index (with vectors)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    ensure_jvm()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            index, queries = run_index(Path(tmp), args)
        else:
            index, queries = Path(tmp), synthetic_index(Path(tmp), args)
        brute_index = SparseIndex.from_vectors_dir(index / "vectors")
        qids = list(queries)
        with ImpactSearcher(index) as searcher:
            searcher.search_weights(dict(list(queries.items())[:5]), args.k)  # warm-up (JIT)
            seconds: dict[str, list[float]] = {"lucene": [], "brute_force": []}
            for _ in range(args.repeats):
                started = time.perf_counter()
                lucene = searcher.search_weights(queries, args.k, args.threads, dequantise=False)
                seconds["lucene"].append(time.perf_counter() - started)
                started = time.perf_counter()
                brute = {}
                for i in range(0, len(qids), 64):
                    brute.update(brute_index.search({q: queries[q] for q in qids[i:i + 64]}, args.k))
                seconds["brute_force"].append(time.perf_counter() - started)
            documents = len(searcher)
    for qid in queries:
        lucene_top, brute_top = (sorted(run[qid].values(), reverse=True)[:10] for run in (lucene, brute))
        assert lucene_top == brute_top, f"{qid}: Lucene and brute force disagree"
    median = {arm: statistics.median(values) for arm, values in seconds.items()}
    terms = statistics.mean(len(w) for w in queries.values())
    record = {"source": args.run or "synthetic", "docs": documents, "queries": len(queries),
              "mean_query_terms": round(terms, 1), "k": args.k, "threads": args.threads, "repeats": args.repeats,
              "lucene_qps": round(len(queries) / median["lucene"], 1),
              "brute_force_qps": round(len(queries) / median["brute_force"], 1),
              "lucene_over_brute_force": round(median["brute_force"] / median["lucene"], 2)}
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
