"""Which engine searches a SPLADE impact index faster: Lucene, or brute-force scoring of its kept vectors.

Neither wins everywhere. Lucene opens an index in about a second at any size, but per query it is slower than one
sparse matrix product on every size measured (1k to 1M documents). Brute force must first read every document
vector into memory, which grows with the collection (227 s and 6 GB at a million documents). So the faster engine
depends on the collection's size AND on how many queries one call searches:

    seconds(engine, N, Q) = setup(engine, N) + Q / qps(engine, N)

``setup`` (Lucene: open and warm up; brute force: load the vectors) and ``qps`` are measured at a few collection
sizes by ``benchmarks/sparse_search.py --scale ...`` (its ``--out`` JSON, kept here as ``search_costs.json``;
table and method in benchmarks/README.md) and interpolated between them on a log-log scale. Beyond the measured
sizes the nearest segment's slope carries on, except that a cost never falls as the collection grows (Lucene's
open time, noise around a second, would otherwise extrapolate to minutes for a tiny index). ``auto`` takes the
engine with the smaller estimate. Brute force needs the index's ``vectors/`` (``keep_vectors``, the default), and
is never chosen where its estimated memory (the measured resident growth) exceeds half of what is available.

What the estimate leaves out: starting the JVM, which only Lucene needs (a second or two per process), so it leans
towards Lucene. The measurements were taken on one machine, one thread each, at k=100 (``zoo search``'s default; a
deeper k costs Lucene more, as it looks up each hit's stored id). The choice only picks the engine: both return the
same top-k scores (the benchmark checks it), so a wrong estimate costs time, never results.
"""

import json
import math
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError
from zoo.retrieval.common import read_meta

ENGINES = ("lucene", "brute_force")
CHOICES = ("auto", *ENGINES)
COSTS = Path(__file__).with_name("search_costs.json")
SETUP = {"lucene": "lucene_open_s", "brute_force": "brute_force_load_s"}
QPS = {"lucene": "lucene_qps", "brute_force": "brute_force_qps"}
MEMORY = "brute_force_added_rss_mib"


def measured_rows(path: Path = COSTS) -> list[dict[str, Any]]:
    """The benchmark's rows, by collection size."""
    return sorted(json.loads(path.read_text())["rows"], key=lambda row: row["docs"])


def _log_interpolate(rows: list[dict[str, Any]], key: str, docs: int, grows: bool) -> float:
    """``row[key]`` at ``docs`` documents, piecewise linear in log(docs) -> log(value); beyond the measured sizes
    the end segment's slope, held at 0 where it would have the value fall (``grows``) or rise (not ``grows``) with
    the collection's size."""
    if len(rows) == 1:
        return float(rows[0][key])
    inside = rows[0]["docs"] <= docs <= rows[-1]["docs"]
    low = max((i for i, row in enumerate(rows[:-1]) if row["docs"] <= docs), default=0)
    a, b = rows[low], rows[low + 1]
    xa, xb = math.log(a["docs"]), math.log(b["docs"])
    ya, yb = math.log(max(a[key], 1e-9)), math.log(max(b[key], 1e-9))
    slope = (yb - ya) / (xb - xa)
    if not inside:
        slope = max(slope, 0.0) if grows else min(slope, 0.0)
        xa, ya = (xb, yb) if docs > b["docs"] else (xa, ya)
    return math.exp(ya + slope * (math.log(max(1, docs)) - xa))


def estimated_seconds(engine: str, docs: int, queries: int, rows: list[dict[str, Any]] | None = None) -> float:
    """Setup plus ``queries`` searches of a ``docs``-document index, from the measured rows."""
    rows = rows if rows is not None else measured_rows()
    return (_log_interpolate(rows, SETUP[engine], docs, grows=True)
            + queries / _log_interpolate(rows, QPS[engine], docs, grows=False))


def available_mib() -> float | None:
    """Memory available to a new allocation (Linux /proc/meminfo MemAvailable), MiB; None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def choose_engine(index_dir: str | Path, queries: int, requested: str = "auto",
                  rows: list[dict[str, Any]] | None = None, memory_mib: float | None = None) -> str:
    """The engine to search the impact index at ``index_dir`` with ``queries`` queries: ``requested`` unless it
    is ``auto``, then the one with the smaller estimated time that fits in memory (``memory_mib``, default what
    the machine has available)."""
    if requested not in CHOICES:
        raise ConfigError(f"engine={requested}: no such engine", f"choose one of {', '.join(CHOICES)}")
    has_vectors = any((Path(index_dir) / "vectors").glob("*.jsonl"))
    if requested == "brute_force" and not has_vectors:
        raise ConfigError("engine=brute_force needs the index's document vectors, and this index was built "
                          "without them", "rebuild it with keep_vectors (the default) or search with engine=lucene")
    if requested != "auto":
        return requested
    if not has_vectors:
        return "lucene"
    rows = rows if rows is not None else measured_rows()
    docs = int(read_meta(index_dir)["documents"])
    memory_mib = memory_mib if memory_mib is not None else available_mib()
    if memory_mib is not None and _log_interpolate(rows, MEMORY, docs, grows=True) > memory_mib / 2:
        return "lucene"
    return min(ENGINES, key=lambda engine: estimated_seconds(engine, docs, queries, rows))
