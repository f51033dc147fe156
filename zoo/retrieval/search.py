"""Search a zoo SPLADE impact index with pre-encoded query weights; results as TREC-run dicts.

    run = search("indexes/topiocqa-splade", query_encoder, {"q1": "what about its economy? [SEP] ..."}, k=1000)
    # {"q1": {"doc7": 31.42, ...}}  scores = integer impact score / quant_scale², i.e. ≈ the float SPLADE dot product

Query weights are quantised with the index's ``quant_scale`` (``zoo_index.json``) exactly like the documents.

Why not ``pyserini.search.lucene.LuceneImpactSearcher``: pyserini 1.6 has no entry point for already-encoded
query weights; its ``search(q: str)`` re-encodes the text with its own encoder (a hub name or an ONNX model it
downloads) and, before searching, drops every query term whose idf is not above ``min_idf`` (0 by default), i.e.
silently drops a term that occurs in every document; its constructor also walks the whole term dictionary to
compute those idfs. ``ImpactSearcher`` here calls the same Anserini class that wraps,
``io.anserini.search.SimpleImpactSearcher``, directly with a ``Map<String, Integer>`` query (its
``search(Map, k)`` / ``batch_search(List<Map>, List<String>, k, threads)`` methods), keeping every term.
Lucene's score is Σ_t q_int[t] · d_int[t] over the shared terms, returned as a float32: exact while it stays
below 2^24 ≈ 1.7e7 (a SPLADE dot product of 40 at quant_scale 100 is 4e5); ties are ordered by Lucene.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

from zoo.errors import ConfigError
from zoo.retrieval.index import read_meta
from zoo.retrieval.sparse import Run, TermWeights, encode_term_weights


def as_queries(queries: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """{qid: text}; a plain list gets ids "0", "1", ..."""
    if isinstance(queries, Mapping):
        return {str(qid): str(text) for qid, text in queries.items()}
    return {str(i): str(text) for i, text in enumerate(queries)}


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
        if self.meta.get("kind") != "splade-impact":
            raise ConfigError(f"'{index_dir}' is a {self.meta.get('kind')} index, not a SPLADE impact index",
                              "use zoo.retrieval.dense.dense_search for dense indexes")
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
           isolate: bool = False) -> Run:
    """Encode ``queries`` with the query ``encoder`` and search the index at ``index_dir``: a TREC run dict.
    ``isolate`` searches in the helper process of ``zoo.retrieval.lucene.in_child`` (the encoding stays here).

    A dense index (``build_index`` with a dense encoder) is searched by ``zoo.retrieval.dense.dense_search``."""
    meta = read_meta(index_dir)
    if meta.get("kind") == "dense-flat-ip":
        from zoo.retrieval.dense import dense_search

        return dense_search(index_dir, encoder, queries, k, batch_size, max_length)
    weights = encode_queries(encoder, queries, float(meta["quant_scale"]), max_length, batch_size)
    if isolate:
        from zoo.retrieval.lucene import in_child

        return in_child(search_weights, index_dir, weights, k, threads, dequantise)
    return search_weights(index_dir, weights, k, threads, dequantise)


def search_weights(index_dir: str | Path, weights: Mapping[str, Mapping[str, int]], k: int = 1000, threads: int = 1,
                   dequantise: bool = True) -> Run:
    """Already-quantised query weights {qid: {term: int}} searched in the impact index at ``index_dir``."""
    with ImpactSearcher(index_dir) as searcher:
        return searcher.search_weights(weights, k, threads, dequantise)
