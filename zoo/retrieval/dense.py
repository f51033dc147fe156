"""The dense engine: sentence embeddings (``dense.minilm``) in an exact faiss ``IndexFlatIP``.

    build(encoder, corpus, out_dir)          ->  out_dir/{faiss.index, docids.json, zoo_index.json}
    search(out_dir, encoder, queries, k)     ->  {qid: {docid: inner product}}

With the normalised all-MiniLM-L6-v2 embeddings the inner product is the cosine similarity. The index is exact
(brute force), so it is also the reference a compressed faiss index would be checked against. faiss needs no JVM:
``isolate`` (keep Lucene out of this process) is accepted so that callers need not know which engine they get, and
is always met.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.atomic import atomic_folder
from zoo.errors import ConfigError, DataError
from zoo.retrieval.common import Run, as_queries, batched, is_index, iter_corpus, read_meta, write_meta

KIND = "dense-flat-ip"
BUILD_OPTIONS = SEARCH_OPTIONS = ("isolate",)  # options beyond the common ones of zoo.retrieval.engines


@torch.no_grad()
def embed(encoder, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None) -> np.ndarray:
    """[N, dim] float32 embeddings (eval mode)."""
    was_training = encoder.training
    encoder.eval()
    try:
        return encoder.encode(list(texts), max_length, batch_size).float().cpu().numpy().astype(np.float32)
    finally:
        encoder.train(was_training)


def build(encoder, corpus: Iterable[Any], out_dir: str | Path, *, batch_size: int = 64, max_length: int | None = None,
          progress: bool = True, total: int | None = None, overwrite: bool = False, isolate: bool = False) -> Path:
    """Embed ``corpus`` ((docid, text) or dicts, see ``zoo.retrieval.common``) into a faiss IndexFlatIP at
    ``out_dir``; ``overwrite`` replaces an earlier zoo index there."""
    import faiss
    from tqdm.auto import tqdm

    out = Path(out_dir).expanduser().resolve()
    with atomic_folder(out, lambda old: overwrite and is_index(old), "an index to overwrite",
                       "pass overwrite=True (only replaces an earlier zoo index) or another out_dir") as tmp:
        index = faiss.IndexFlatIP(int(encoder.dim))
        docids: list[str] = []
        with tqdm(total=total, unit="doc", desc="embedding corpus", disable=not progress) as bar:
            for batch in batched(iter_corpus(corpus), batch_size):
                index.add(embed(encoder, [text for _, text in batch], batch_size, max_length))
                docids.extend(docid for docid, _ in batch)
                bar.update(len(batch))
        if not docids:
            raise DataError("the corpus is empty: nothing to index")
        if len(set(docids)) != len(docids):
            raise DataError("the corpus has duplicate document ids")
        faiss.write_index(index, str(tmp / "faiss.index"))
        (tmp / "docids.json").write_text(json.dumps(docids), encoding="utf-8")
        write_meta(tmp, {"kind": KIND, "encoder": encoder.name, "dim": int(encoder.dim),
                         "max_length": int(max_length or encoder.max_length), "documents": len(docids)})
    return out


def search(index_dir: str | Path, encoder, queries: Mapping[str, str] | Sequence[str], k: int = 1000,
           batch_size: int = 64, max_length: int | None = None, isolate: bool = False) -> Run:
    """Embed ``queries`` and return the top-k documents by inner product: {qid: {docid: score}}."""
    import faiss

    meta = read_meta(index_dir)
    if meta.get("kind") != KIND:
        raise ConfigError(f"'{index_dir}' is a {meta.get('kind')} index, not a dense one",
                          "search it through zoo.retrieval.engines.search")
    index = faiss.read_index(str(Path(index_dir) / "faiss.index"))
    docids = json.loads((Path(index_dir) / "docids.json").read_text(encoding="utf-8"))
    queries = as_queries(queries)
    if not queries:
        return {}
    scores, rows = index.search(embed(encoder, list(queries.values()), batch_size, max_length), min(k, len(docids)))
    return {qid: {docids[i]: float(s) for s, i in zip(srow, irow, strict=True) if i >= 0}
            for qid, srow, irow in zip(queries, scores, rows, strict=True)}
