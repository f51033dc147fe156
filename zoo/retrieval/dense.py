"""Dense retrieval baseline: sentence embeddings (``dense.minilm``) in an exact faiss ``IndexFlatIP``.

Same interface as the SPLADE path:

    build_dense_index(encoder, corpus, out_dir)          ->  out_dir/{faiss.index, docids.json, zoo_index.json}
    dense_search(out_dir, encoder, queries, k=1000)      ->  {qid: {docid: inner product}}

With the normalised all-MiniLM-L6-v2 embeddings the inner product is the cosine similarity. The index is exact
(brute force), so it is also the reference a compressed faiss index would be checked against.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ConfigError, DataError
from zoo.retrieval.index import META, SCHEMA, _batches, iter_corpus, read_meta
from zoo.retrieval.search import as_queries
from zoo.retrieval.sparse import Run


@torch.no_grad()
def embed(encoder, texts: Sequence[str], batch_size: int = 64, max_length: int | None = None) -> np.ndarray:
    """[N, dim] float32 embeddings (eval mode)."""
    was_training = encoder.training
    encoder.eval()
    try:
        return encoder.encode(list(texts), max_length, batch_size).float().cpu().numpy().astype(np.float32)
    finally:
        encoder.train(was_training)


def build_dense_index(encoder, corpus: Iterable[Any], out_dir: str | Path, *, batch_size: int = 64,
                      max_length: int | None = None, progress: bool = True, total: int | None = None,
                      overwrite: bool = False) -> Path:
    """Embed ``corpus`` ((docid, text) or dicts, as ``build_index``) into a faiss IndexFlatIP at ``out_dir``."""
    import faiss
    from tqdm.auto import tqdm

    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not (overwrite and (out / META).is_file()):
        raise ConfigError(f"'{out}' already exists", "pass overwrite=True or another out_dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o755)
    try:
        index = faiss.IndexFlatIP(int(encoder.dim))
        docids: list[str] = []
        with tqdm(total=total, unit="doc", desc="embedding corpus", disable=not progress) as bar:
            for batch in _batches(iter_corpus(corpus), batch_size):
                index.add(embed(encoder, [text for _, text in batch], batch_size, max_length))
                docids.extend(docid for docid, _ in batch)
                bar.update(len(batch))
        if not docids:
            raise DataError("the corpus is empty: nothing to index")
        if len(set(docids)) != len(docids):
            raise DataError("the corpus has duplicate document ids")
        faiss.write_index(index, str(tmp / "faiss.index"))
        (tmp / "docids.json").write_text(json.dumps(docids), encoding="utf-8")
        meta = {"schema": SCHEMA, "kind": "dense-flat-ip", "encoder": getattr(encoder, "name", "dense"),
                "dim": int(encoder.dim), "max_length": int(max_length or encoder.max_length), "documents": len(docids)}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def dense_search(index_dir: str | Path, encoder, queries: Mapping[str, str] | Sequence[str], k: int = 1000,
                 batch_size: int = 64, max_length: int | None = None) -> Run:
    """Embed ``queries`` and return the top-k documents by inner product: {qid: {docid: score}}."""
    import faiss

    meta = read_meta(index_dir)
    if meta.get("kind") != "dense-flat-ip":
        raise ConfigError(f"'{index_dir}' is a {meta.get('kind')} index, not a dense one", "use zoo.retrieval.search")
    index = faiss.read_index(str(Path(index_dir) / "faiss.index"))
    docids = json.loads((Path(index_dir) / "docids.json").read_text(encoding="utf-8"))
    queries = as_queries(queries)
    if not queries:
        return {}
    scores, rows = index.search(embed(encoder, list(queries.values()), batch_size, max_length), min(k, len(docids)))
    return {qid: {docids[i]: float(s) for s, i in zip(srow, irow, strict=True) if i >= 0}
            for qid, srow, irow in zip(queries, scores, rows, strict=True)}
