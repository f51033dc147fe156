"""Lucene impact search (pyserini/Anserini) vs the brute-force torch sparse scorer, same quantised weights.

    python benchmarks/sparse_search.py --run runs/disco_mini/<id>     # the mini index, the run's test queries
    python benchmarks/sparse_search.py                                 # 20k synthetic docs, 200 queries, k=1000
    python benchmarks/sparse_search.py --run runs/disco_mini/<id> --scale 10000,100000,1000000 --out scale.json
    python benchmarks/sparse_search.py --scale 10000,100000,1000000   # Zipf-synthetic at each size

With ``--run``: the run's collection encoded by its frozen document encoder into an impact index (what
``zoo index`` builds; ``--index DIR`` reuses one built earlier), and the conversations of ``--split`` encoded by
the run's student (the query encoder), quantised with the index's scale.
With ``--run`` and ``--scale``: at each size a synthetic collection drawn from that real encoded collection's
statistics (a document's number of terms from the real lengths, its terms by their real document frequency, its
weights from the real weights), searched with the real encoded queries. Its vocabulary is the real collection's
terms only, so posting lists are longer than in a real collection of that size (which costs Lucene more).
Without ``--run``: SPLADE-like vectors, |V| = 30522, a Zipf-like term popularity (p(rank r) ∝ 1/(r + 10)), 120
draws per document and 30 per query (repeats dropped), integer weights 1..300.
Both arms must return the same top-10 scores for every query (checked). The two arms alternate ``--repeats``
times; the median queries/s of each and their ratio are printed, with each arm's build (load) time, the
resident memory it added to this one process, and how many queries a process must search before brute force's
load is paid back (``brute_force_faster_from_queries``). ``zoo search`` chooses its engine from these rows
(``zoo.retrieval.engine_choice``; the committed ones are ``zoo/retrieval/search_costs.json``).
"""

import argparse
import itertools
import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VOCAB = 30522


@dataclass
class TermStatistics:
    """What synthetic vectors are drawn from: term names and their popularity, lengths and weights to draw."""
    terms: list[str]
    popularity: np.ndarray  # probability of each term per draw
    lengths: np.ndarray  # draws per document (repeats are dropped, as a vector holds a term once)
    weights: np.ndarray  # integer weights, drawn uniformly from this pool

    @classmethod
    def zipf(cls, draws: int) -> "TermStatistics":
        popularity = 1.0 / (np.arange(VOCAB) + 10.0)
        return cls([f"t{i}" for i in range(VOCAB)], popularity / popularity.sum(), np.array([draws]),
                   np.arange(1, 301))

    @classmethod
    def of_collection(cls, vectors_dir: Path) -> "TermStatistics":
        from zoo.retrieval.sparse import read_vectors

        frequency: dict[str, int] = {}
        lengths, weights = [], []
        for _, vector in read_vectors(sorted(Path(vectors_dir).glob("*.jsonl"))):
            lengths.append(len(vector))
            weights.extend(vector.values())
            for term in vector:
                frequency[term] = frequency.get(term, 0) + 1
        counts = np.array(list(frequency.values()), dtype=np.float64)
        return cls(list(frequency), counts / counts.sum(), np.array(lengths), np.array(weights))

    def vectors(self, rng: np.random.Generator, count: int):
        """``count`` {term: weight} dicts, drawn in chunks (a million documents never sit in memory as dicts)."""
        for start in range(0, count, 10_000):
            size = min(10_000, count - start)
            lengths = rng.choice(self.lengths, size)
            terms = rng.choice(len(self.terms), int(lengths.sum()), p=self.popularity)
            weights = rng.choice(self.weights, len(terms))
            for doc_terms, doc_weights in zip(np.split(terms, np.cumsum(lengths)[:-1]),
                                              np.split(weights, np.cumsum(lengths)[:-1]), strict=True):
                yield {self.terms[t]: int(w) for t, w in zip(doc_terms.tolist(), doc_weights.tolist(), strict=True)}


def resident_mib() -> float:
    """This process's resident memory (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_index(root: Path, stats: TermStatistics, docs: int, seed: int, threads: int) -> float:
    """Writes ``docs`` synthetic vectors and their impact index under ``root``; returns the indexing seconds."""
    from zoo.retrieval.common import META
    from zoo.retrieval.impact import index_vectors

    rng = np.random.default_rng([seed, docs])
    (root / "vectors").mkdir(parents=True)
    with open(root / "vectors" / "docs-00000.jsonl", "w") as handle:
        for i, vector in enumerate(stats.vectors(rng, docs)):
            handle.write(json.dumps({"id": f"d{i}", "contents": "", "vector": vector}) + "\n")
    started = time.perf_counter()
    index_vectors(root / "vectors", root / "lucene", threads=threads)
    (root / META).write_text(json.dumps({"kind": "splade-impact", "quant_scale": 1.0}))
    return time.perf_counter() - started


def run_index(root: Path, args) -> tuple[Path, dict[str, dict[str, int]], float | None]:
    """The run's corpus index (built under ``root`` unless ``--index``), its split's encoded queries, and the
    seconds the build took (None when reused)."""
    import torch

    from zoo.retrieval.common import read_meta
    from zoo.retrieval.engines import build_index
    from zoo.retrieval.impact import encode_queries
    from zoo.retrieval.run_encoders import document_encoder
    from zoo.runs import load_run

    torch.set_num_threads(args.threads)
    loaded = load_run(Path(args.run))
    index, seconds = (Path(args.index) if args.index else None), None
    if index is None:
        started = time.perf_counter()
        index = build_index(document_encoder(loaded), loaded.datamodule.collection(), root / "index", progress=False,
                            max_length=loaded.cfg.data.get("eval_max_length_doc"))
        seconds = time.perf_counter() - started
    queries = loaded.datamodule.queries(args.split, "conversation")
    if args.queries:  # the first turns of the split, in its order (the whole split by default)
        queries = dict(list(queries.items())[:args.queries])
    weights = encode_queries(loaded.student.eval(), queries, float(read_meta(index)["quant_scale"]),
                             loaded.cfg.data.get("eval_max_length_query"))
    return index, weights, seconds


def measure(index: Path, queries: dict[str, dict[str, int]], args) -> dict:
    """Both engines on one index, side by side in this process: load time, added memory, median queries/s."""
    from zoo.retrieval.impact import ImpactSearcher
    from zoo.retrieval.sparse import SparseIndex

    before = resident_mib()
    started = time.perf_counter()
    brute_index = SparseIndex.from_vectors_dir(index / "vectors")
    brute_load = time.perf_counter() - started
    brute_mib = resident_mib() - before
    qids = list(queries)
    before = resident_mib()
    started = time.perf_counter()
    with ImpactSearcher(index) as searcher:
        searcher.search_weights(dict(list(queries.items())[:5]), args.k)  # warm-up (JIT)
        lucene_load = time.perf_counter() - started
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
        lucene_mib = resident_mib() - before
        documents = len(searcher)
    for qid in queries:
        lucene_top, brute_top = (sorted(run[qid].values(), reverse=True)[:10] for run in (lucene, brute))
        assert lucene_top == brute_top, f"{qid}: Lucene and brute force disagree"
    median = {arm: statistics.median(values) for arm, values in seconds.items()}
    per_query = {arm: value / len(queries) for arm, value in median.items()}
    matrix = brute_index.matrix
    csr_bytes = sum(t.element_size() * t.numel() for t in (matrix.crow_indices(), matrix.col_indices(),
                                                           matrix.values()))
    lucene_disk = sum(p.stat().st_size for p in (index / "lucene").rglob("*") if p.is_file())
    return {"docs": documents, "queries": len(queries),
            "mean_query_terms": round(statistics.mean(len(w) for w in queries.values()), 1),
            "mean_doc_terms": round(matrix.values().numel() / max(1, documents), 1),
            "k": args.k, "threads": args.threads, "repeats": args.repeats,
            "lucene_qps": round(len(queries) / median["lucene"], 1),
            "brute_force_qps": round(len(queries) / median["brute_force"], 1),
            "lucene_over_brute_force": round(median["brute_force"] / median["lucene"], 2),
            "brute_force_faster_from_queries": break_even(brute_load - lucene_load,
                                                          per_query["lucene"] - per_query["brute_force"]),
            "lucene_open_s": round(lucene_load, 2), "brute_force_load_s": round(brute_load, 2),
            "lucene_added_rss_mib": round(lucene_mib), "brute_force_added_rss_mib": round(brute_mib),
            "lucene_index_mib": round(lucene_disk / 2**20, 1), "brute_force_csr_mib": round(csr_bytes / 2**20, 1)}


def break_even(extra_setup_s: float, saved_per_query_s: float) -> int | None:
    """How many queries one process must search before brute force's load (``extra_setup_s`` beyond Lucene's
    open) is paid back by its faster queries: 0 if it never costs more, None if it never catches up."""
    if extra_setup_s <= 0 and saved_per_query_s >= 0:
        return 0
    if saved_per_query_s <= 0:
        return None
    return int(math.ceil(extra_setup_s / saved_per_query_s))


def crossover(rows: list[dict]) -> int | None:
    """The collection size where Lucene's queries/s overtakes brute force's, log-linear between measured sizes."""
    for low, high in itertools.pairwise(rows):
        a, b = np.log(low["lucene_over_brute_force"]), np.log(high["lucene_over_brute_force"])
        if a < 0 <= b:
            x = np.log(low["docs"]) + (np.log(high["docs"]) - np.log(low["docs"])) * (-a) / (b - a)
            return int(round(float(np.exp(x)), -3))
    return None


def main() -> None:
    from zoo.retrieval.lucene import ensure_jvm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a disco_* run folder: benchmark on its corpus and its split's queries")
    parser.add_argument("--index", help="with --run: an index built earlier by zoo index (with vectors)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--docs", type=int, default=20_000, help="synthetic documents, without --run or --scale")
    parser.add_argument("--scale", help="comma-separated collection sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--queries", type=int, help="queries: synthetic ones without --run (default 200), else the "
                                                   "first this many of the split's (default all)")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    ensure_jvm()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            index, queries, seconds = run_index(Path(tmp), args)
            stats, source = TermStatistics.of_collection(index / "vectors"), f"synthetic from {args.run}"
        else:
            stats, source, index, seconds = TermStatistics.zipf(120), "synthetic (Zipf)", None, None
            rng = np.random.default_rng([args.seed, 1])
            queries = {f"q{i}": v for i, v in enumerate(TermStatistics.zipf(30).vectors(rng, args.queries or 200))}
        sizes = [int(s) for s in args.scale.split(",")] if args.scale else [] if args.run else [args.docs]
        if args.run and not sizes:
            rows.append({"source": args.run, "index_build_s": seconds and round(seconds, 1),
                         **measure(index, queries, args)})
        for size in sizes:
            folder = Path(tmp) / f"synthetic-{size}"
            build = synthetic_index(folder, stats, size, args.seed, args.threads)
            rows.append({"source": source, "lucene_index_build_s": round(build, 1), **measure(folder, queries, args)})
            print(json.dumps(rows[-1]), flush=True)
    record = {"rows": rows, "crossover_docs": crossover(rows) if len(rows) > 1 else None}
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
