"""Full-corpus retrieval evaluation of a conversational data module (the ``retrieval`` kind's ``evaluate``).

The corpus the data module holds is encoded with the frozen document encoder into an index (``zoo.retrieval.engines``:
a Lucene impact index for SPLADE, an exact faiss index for dense encoders), the split's queries are encoded by the
query encoder and searched (top ``data.eval_k``, default 100), and the run is scored against the split's qrels with
ir_measures: MRR@10, nDCG@3, Recall@10, Recall@100 (``<prefix>/<metric>``). Encoding runs here; Lucene indexing and
search run in the Lucene helper process (``zoo.retrieval.lucene.in_child``), so no JVM lives in a process that
trains (the JVM next to a Lightning fit died with SIGSEGV in ``zoo reproduce``).

The whole collection file (``data.corpus``; for the mini set its corpus.jsonl) is indexed, not only the documents
the training side holds, so every document competes. ``data.eval_index`` (optional) names an index built earlier
by ``zoo index`` with the same document encoder, which is then searched as it is.

The index is built once per document encoder and kept (in a temporary folder) on the data module: a run evaluates
val and test, and the teacher, with the same frozen encoder, so re-encoding the corpus each time would only cost.
It is keyed by the encoder object and a checksum of its weights, so a document encoder that was trained in
between (a bi-encoder recipe) gets a fresh index.
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from zoo.metrics.retrieval import evaluate
from zoo.retrieval.engines import build_index, search

METRICS = ("mrr@10", "ndcg@3", "recall@10", "recall@100")
INDEX_PREFIX = "zoo-eval-index-"


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().float().sum().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def remove_orphaned_indexes() -> list[Path]:
    """Delete the evaluation indexes that killed processes left in the temp folder (a TemporaryDirectory is
    only cleaned up by a process that exits normally); their folder names carry the owner's pid."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{INDEX_PREFIX}*-*"):
        owner = folder.name[len(INDEX_PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def corpus_index(datamodule, doc_encoder) -> Path:
    """The index of ``datamodule``'s documents under ``doc_encoder``, built on first use and kept."""
    given = datamodule.cfg.get("eval_index")
    if given:
        return Path(str(given)).expanduser()
    key = (id(doc_encoder), weights_digest(doc_encoder))
    cache = datamodule.__dict__.setdefault("_zoo_indexes", {})
    if key not in cache:
        remove_orphaned_indexes()
        folder = tempfile.TemporaryDirectory(prefix=f"{INDEX_PREFIX}{os.getpid()}-")
        max_length = datamodule.cfg.get("eval_max_length_doc")  # None = the encoder's own
        path = build_index(doc_encoder, datamodule.collection(), Path(folder.name) / "index", max_length=max_length,
                           progress=False, isolate=True)
        cache[key] = (folder, path)  # the TemporaryDirectory object lives as long as the data module
    return cache[key][1]


@torch.no_grad()
def evaluate_retrieval(datamodule, query_encoder, split: str, prefix: str, doc_encoder,
                       query_kind: str = "conversation", limit_queries: int | None = None) -> dict[str, float]:
    """The split's metrics over its judged queries; over the first ``limit_queries`` of them only when given
    (a smoke run: the whole corpus is still indexed)."""
    device = next(query_encoder.parameters()).device
    doc_encoder.to(device)
    index = corpus_index(datamodule, doc_encoder)
    queries = datamodule.queries(split, query_kind)
    qrels = datamodule.qrels(split)
    if limit_queries is not None:
        queries = dict(list(queries.items())[:limit_queries])
        qrels = {qid: docs for qid, docs in qrels.items() if qid in queries}
    max_length = datamodule.cfg.get("eval_max_length_query")
    run = search(index, query_encoder, queries, k=int(datamodule.cfg.get("eval_k", 100)), max_length=max_length,
                 isolate=True)
    metrics = evaluate(run, qrels)
    return {f"{prefix}/{name}": float(metrics[name]) for name in METRICS}
