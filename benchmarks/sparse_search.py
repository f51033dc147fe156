"""Lucene impact search (pyserini/Anserini) vs the brute-force torch sparse scorer, same quantised weights.

    python benchmarks/sparse_search.py                        # 20k synthetic docs, 200 queries, k=1000
    python benchmarks/sparse_search.py --docs 200000 --queries 500 --threads 4 --out bench.json

Synthetic SPLADE-like vectors: |V| = 30522, a Zipf-like term popularity (p(rank r) ∝ 1/(r + 10)), up to 120
terms per document and 30 per query, integer weights 1..300 (quant_scale 100 on weights up to 3). Both arms must
return the same top-10 scores for every query (checked); prints queries/s of each and the speed ratio.
"""

import argparse
import itertools
import json
import random
import tempfile
import time
from pathlib import Path

VOCAB = 30522


CUM = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(VOCAB)))  # Zipf-like term popularity


def vector(rng: random.Random, terms: int) -> dict[str, int]:
    ids = set(rng.choices(range(VOCAB), cum_weights=CUM, k=terms))
    return {f"t{i}": rng.randint(1, 300) for i in ids}


def main() -> None:
    from zoo.retrieval.index import META, index_vectors
    from zoo.retrieval.search import ImpactSearcher
    from zoo.retrieval.sparse import SparseIndex

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    docs = [(f"d{i}", vector(rng, 120)) for i in range(args.docs)]
    queries = {f"q{i}": vector(rng, 30) for i in range(args.queries)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "vectors").mkdir()
        with open(root / "vectors" / "docs-00000.jsonl", "w") as handle:
            for docid, weights in docs:
                handle.write(json.dumps({"id": docid, "contents": "", "vector": weights}) + "\n")
        started = time.perf_counter()
        index_vectors(root / "vectors", root / "lucene", threads=args.threads)
        index_seconds = time.perf_counter() - started
        (root / META).write_text(json.dumps({"kind": "splade-impact", "quant_scale": 1.0}))
        with ImpactSearcher(root) as searcher:
            searcher.search_weights(dict(list(queries.items())[:5]), args.k)  # warm-up (JIT)
            started = time.perf_counter()
            lucene = searcher.search_weights(queries, args.k, args.threads, dequantise=False)
            lucene_seconds = time.perf_counter() - started
        brute_index = SparseIndex(docs)
        started = time.perf_counter()
        brute = {}
        qids = list(queries)
        for i in range(0, len(qids), 64):
            brute.update(brute_index.search({q: queries[q] for q in qids[i:i + 64]}, args.k))
        brute_seconds = time.perf_counter() - started
    for qid in queries:
        lucene_top, brute_top = (sorted(run[qid].values(), reverse=True)[:10] for run in (lucene, brute))
        assert lucene_top == brute_top, f"{qid}: Lucene and brute force disagree"
    record = {"docs": args.docs, "queries": args.queries, "k": args.k, "threads": args.threads,
              "index_seconds": round(index_seconds, 2), "lucene_qps": round(args.queries / lucene_seconds, 1),
              "brute_force_qps": round(args.queries / brute_seconds, 1),
              "lucene_over_brute_force": round(brute_seconds / lucene_seconds, 2)}
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
