"""The sparse engine: SPLADE term weights in a Lucene impact index (pyserini / Anserini), searched by term weights.

    build(encoder, corpus, "indexes/topiocqa-splade", quant_scale=100)
    search("indexes/topiocqa-splade", query_encoder, {"q1": "what about its economy? [SEP] ..."}, k=1000)
    # {"q1": {"doc7": 31.42, ...}}  scores = integer impact score / quant_scale², i.e. ≈ the float SPLADE dot product

``build`` writes, atomically (a hidden temp folder renamed into place once everything succeeded):

    <out>/vectors/docs-00000.jsonl   pyserini JsonVectorCollection: {"id": ..., "contents": "", "vector": {term: int}}
    <out>/lucene/                    the Lucene impact index (Anserini IndexCollection -impact -pretokenized)
    <out>/zoo_index.json             kind splade-impact, encoder name, quant_scale, max_length, documents, vocabulary
                                     size, versions

Weights are quantised as round(w · quant_scale) (``zoo.retrieval.sparse``): Lucene impact postings are integers, and
query weights are quantised with the index's ``quant_scale`` exactly like the documents. The indexer is Anserini's
``io.anserini.index.IndexCollection`` called in-process through pyjnius, exactly what ``python -m
pyserini.index.lucene --collection JsonVectorCollection --impact --pretokenized ...`` runs; in-process, because a
fresh ``python -m pyserini...`` would start its JVM with pyserini's own options, which fail here
(``zoo.retrieval.lucene``). ``-pretokenized`` makes Lucene split on whitespace only, so WordPiece terms such as
``##s`` are indexed as they are.

Why not ``pyserini.search.lucene.LuceneImpactSearcher``: pyserini 1.6 has no entry point for already-encoded
query weights; its ``search(q: str)`` re-encodes the text with its own encoder (a hub name or an ONNX model it
downloads) and, before searching, drops every query term whose idf is not above ``min_idf`` (0 by default), i.e.
silently drops a term that occurs in every document; its constructor also walks the whole term dictionary to
compute those idfs. ``ImpactSearcher`` here calls the same Anserini class that wraps,
``io.anserini.search.SimpleImpactSearcher``, directly with a ``Map<String, Integer>`` query (its
``search(Map, k)`` / ``batch_search(List<Map>, List<String>, k, threads)`` methods), keeping every term.
Lucene's score is Σ_t q_int[t] · d_int[t] over the shared terms, returned as a float32: exact while it stays
below 2^24 ≈ 1.7e7 (a SPLADE dot product of 40 at quant_scale 100 is 4e5); ties are ordered by Lucene.

``isolate=True`` runs the Lucene part (indexing, searching) in the helper process of
``zoo.retrieval.lucene.in_child``; the encoding stays in the calling process.
"""

import json
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.atomic import atomic_folder
from zoo.errors import ConfigError, DataError
from zoo.retrieval.common import Run, as_queries, batched, is_index, iter_corpus, read_meta, versions, write_meta
from zoo.retrieval.sparse import TermWeights, encode_term_weights

KIND = "splade-impact"
# Options beyond the common ones of zoo.retrieval.engines:
BUILD_OPTIONS = ("quant_scale", "threads", "shard_size", "keep_vectors", "isolate")
SEARCH_OPTIONS = ("threads", "dequantise", "isolate", "engine")


def write_vectors(encoder, corpus: Iterable[Any], vectors_dir: Path, *, quant_scale: float = 100.0,
                  batch_size: int = 32, max_length: int | None = None, shard_size: int = 100_000,
                  progress: bool = True, total: int | None = None) -> int:
    """Encode ``corpus`` into JsonVectorCollection shards under ``vectors_dir``; returns the number of documents."""
    from tqdm.auto import tqdm

    vectors_dir = Path(vectors_dir)
    vectors_dir.mkdir(parents=True, exist_ok=True)
    count, handle, seen = 0, None, set()
    bar = tqdm(total=total, unit="doc", desc="encoding corpus", disable=not progress)
    try:
        for batch in batched(iter_corpus(corpus), batch_size):
            weights = encode_term_weights(encoder, [text for _, text in batch], quant_scale, max_length, batch_size)
            for (docid, _), vector in zip(batch, weights, strict=True):
                if docid in seen:
                    raise DataError(f"document id '{docid}' occurs twice in the corpus")
                seen.add(docid)
                if count % shard_size == 0:
                    if handle is not None:
                        handle.close()
                    handle = open(vectors_dir / f"docs-{count // shard_size:05d}.jsonl", "w", encoding="utf-8")
                handle.write(json.dumps({"id": docid, "contents": "", "vector": vector}, ensure_ascii=False) + "\n")
                count += 1
            bar.update(len(batch))
    finally:
        bar.close()
        if handle is not None:
            handle.close()
    if count == 0:
        raise DataError("the corpus is empty: nothing to index")
    return count


def index_vectors(vectors_dir: Path, lucene_dir: Path, threads: int = 1, optimize: bool = True,
                  quiet: bool = True) -> None:
    """Anserini IndexCollection -collection JsonVectorCollection -impact -pretokenized (in-process);
    ``optimize`` merges the index into one segment (faster search)."""
    from zoo.retrieval.lucene import jclass

    if quiet:
        _quiet_anserini()
    args = ["-collection", "JsonVectorCollection", "-input", str(vectors_dir), "-index", str(lucene_dir),
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(int(threads)),
            "-impact", "-pretokenized", *(["-optimize"] if optimize else [])]
    jclass("io.anserini.index.IndexCollection").main(args)


def index_and_count(vectors_dir: Path, lucene_dir: Path, threads: int = 1) -> int:
    """``index_vectors``, then the number of documents the new index holds (checked against the encoded count)."""
    from zoo.retrieval.lucene import jclass

    index_vectors(vectors_dir, lucene_dir, threads)
    searcher = jclass("io.anserini.search.SimpleImpactSearcher")(str(lucene_dir))
    try:
        return int(searcher.get_total_num_docs())
    finally:
        searcher.close()


def _quiet_anserini() -> None:
    """Anserini logs every indexing step at INFO through log4j; keep warnings and errors only."""
    from zoo.retrieval.lucene import jclass

    level = jclass("org.apache.logging.log4j.Level")
    jclass("org.apache.logging.log4j.core.config.Configurator").setLevel("io.anserini", level.WARN)


def build(encoder, corpus: Iterable[Any], out_dir: str | Path, *, quant_scale: float = 100.0, batch_size: int = 32,
          max_length: int | None = None, threads: int = 1, shard_size: int = 100_000, keep_vectors: bool = True,
          progress: bool = True, total: int | None = None, overwrite: bool = False, isolate: bool = False) -> Path:
    """Encode ``corpus`` with the SPLADE ``encoder`` (put in eval mode here) and index it at ``out_dir``.

    ``keep_vectors`` keeps the JsonVectorCollection files (the brute-force ``SparseIndex`` reads them; ~2-3x the
    index size); ``total`` sizes the progress bar; ``overwrite`` replaces an earlier zoo index there. Returns
    ``out_dir``."""
    out = Path(out_dir).expanduser().resolve()
    started = time.perf_counter()
    with atomic_folder(out, lambda old: overwrite and is_index(old), "an index to overwrite",
                       "pass overwrite=True (only replaces an earlier zoo index) or another out_dir") as tmp:
        count = write_vectors(encoder, corpus, tmp / "vectors", quant_scale=quant_scale, batch_size=batch_size,
                              max_length=max_length, shard_size=shard_size, progress=progress, total=total)
        encoded = time.perf_counter()
        if isolate:
            from zoo.retrieval.lucene import in_child

            indexed = in_child(index_and_count, tmp / "vectors", tmp / "lucene", threads)
        else:
            indexed = index_and_count(tmp / "vectors", tmp / "lucene", threads)
        if indexed != count:
            raise DataError(f"Lucene indexed {indexed} of {count} documents", "see the Anserini log above")
        if not keep_vectors:
            shutil.rmtree(tmp / "vectors")
        write_meta(tmp, {"kind": KIND, "encoder": encoder.name, "quant_scale": float(quant_scale),
                         "max_length": int(max_length or encoder.max_length), "documents": count,
                         "vocab_size": int(encoder.vocab_size), "vectors": keep_vectors,
                         "seconds": {"encode": round(encoded - started, 3),
                                     "index": round(time.perf_counter() - encoded, 3)},
                         "versions": versions()})
    return out


def encode_queries(encoder, queries: Mapping[str, str] | Sequence[str], quant_scale: float = 100.0,
                   max_length: int | None = None, batch_size: int = 32) -> dict[str, TermWeights]:
    """{qid: text} -> {qid: {term: int weight}} (round(w · quant_scale), zeros dropped)."""
    queries = as_queries(queries)
    weights = encode_term_weights(encoder, list(queries.values()), quant_scale, max_length, batch_size)
    return dict(zip(queries, weights, strict=True))


class ImpactSearcher:
    """A Lucene impact index built by ``build_index``, searched with {term: int} query weights."""

    def __init__(self, index_dir: str | Path):
        from zoo.retrieval.lucene import jclass

        self.index_dir = Path(index_dir)
        self.meta = read_meta(self.index_dir)
        if self.meta.get("kind") != KIND:
            raise ConfigError(f"'{index_dir}' is a {self.meta.get('kind')} index, not a SPLADE impact index",
                              "search it through zoo.retrieval.engines.search")
        self.quant_scale = float(self.meta["quant_scale"])
        # A SPLADE query without a sparsity regulariser can weight thousands of terms, one Lucene clause each:
        # lift Lucene's default cap of 1024 clauses (a TooManyClauses error otherwise).
        jclass("org.apache.lucene.search.IndexSearcher").setMaxClauseCount(1 << 16)
        self._searcher = jclass("io.anserini.search.SimpleImpactSearcher")(str(self.index_dir / "lucene"))
        self._map, self._int = jclass("java.util.HashMap"), jclass("java.lang.Integer")
        self._list = jclass("java.util.ArrayList")

    def __len__(self) -> int:
        return int(self._searcher.get_total_num_docs())

    def _jquery(self, weights: Mapping[str, int]):
        query = self._map()
        for term, weight in weights.items():
            if int(weight) > 0:
                query.put(str(term), self._int(int(weight)))
        return query

    def search_weights(self, queries: Mapping[str, Mapping[str, int]], k: int = 1000, threads: int = 1,
                       dequantise: bool = True) -> Run:
        """{qid: {term: int}} -> {qid: {docid: score}}; ``dequantise`` divides the integer scores by quant_scale²."""
        scale = self.quant_scale ** 2 if dequantise else 1.0
        run: Run = {str(qid): {} for qid in queries}
        todo = {str(qid): w for qid, w in queries.items() if any(int(v) > 0 for v in w.values())}
        if not todo:
            return run
        if threads <= 1 or len(todo) == 1:
            for qid, weights in todo.items():
                run[qid] = {hit.docid: float(hit.score) / scale for hit in self._searcher.search(self._jquery(weights),
                                                                                                 int(k))}
            return run
        jqueries, jqids = self._list(), self._list()
        for qid, weights in todo.items():
            jqueries.add(self._jquery(weights))
            jqids.add(qid)
        results = self._searcher.batch_search(jqueries, jqids, int(k), int(threads))
        for entry in results.entrySet().toArray():
            run[entry.getKey()] = {hit.docid: float(hit.score) / scale for hit in entry.getValue()}
        return run

    def close(self) -> None:
        self._searcher.close()

    def __enter__(self) -> "ImpactSearcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()



def search(index_dir: str | Path, encoder, queries: Mapping[str, str] | Sequence[str], k: int = 1000,
           threads: int = 1, batch_size: int = 32, max_length: int | None = None, dequantise: bool = True,
           isolate: bool = False, engine: str = "lucene") -> Run:
    """Encode ``queries`` with the SPLADE query ``encoder`` and search the impact index at ``index_dir``, with
    Lucene or by brute force over its kept vectors (``engine``: lucene, brute_force, or auto = the one estimated
    faster for this index size and query count, ``zoo.retrieval.engine_choice``)."""
    from zoo.retrieval.engine_choice import choose_engine

    meta = read_meta(index_dir)
    weights = encode_queries(encoder, queries, float(meta["quant_scale"]), max_length, batch_size)
    if choose_engine(index_dir, len(weights), engine) == "brute_force":
        from zoo.retrieval.sparse import SparseIndex

        scale = float(meta["quant_scale"]) ** 2 if dequantise else 1.0
        return SparseIndex.from_vectors_dir(Path(index_dir) / "vectors").search(weights, k, scale)
    if isolate:
        from zoo.retrieval.lucene import in_child

        return in_child(search_weights, index_dir, weights, k, threads, dequantise)
    return search_weights(index_dir, weights, k, threads, dequantise)


def search_weights(index_dir: str | Path, weights: Mapping[str, Mapping[str, int]], k: int = 1000, threads: int = 1,
                   dequantise: bool = True) -> Run:
    """Already-quantised query weights {qid: {term: int}} searched in the impact index at ``index_dir``."""
    with ImpactSearcher(index_dir) as searcher:
        return searcher.search_weights(weights, k, threads, dequantise)
