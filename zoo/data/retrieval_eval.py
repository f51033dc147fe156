"""Full-corpus retrieval evaluation of a conversational data module (``ConvRetrievalDataModule.evaluate``).

The corpus the module holds is encoded with the frozen document encoder into a Lucene impact index
(``zoo.retrieval.index.build_index``, quantised weights), the split's queries are encoded by the query encoder
and searched (top ``data.eval_k``, default 100), and the run is scored against the split's qrels with
ir_measures: MRR@10, nDCG@3, Recall@10, Recall@100 (``<prefix>/<metric>``). Encoding runs here; indexing and
search run in the Lucene helper process (``zoo.retrieval.lucene.in_child``), so no JVM lives in a process that
trains (the JVM next to a Lightning fit died with SIGSEGV in ``zoo reproduce``). A dense document encoder
(``dense_ce``'s) gets an exact faiss index instead (``zoo.retrieval.dense``), searched in this process.

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

METRICS = ("mrr@10", "ndcg@3", "recall@10", "recall@100")


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().float().sum().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


INDEX_PREFIX = "zoo-eval-index-"


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
    """The index of ``datamodule``'s documents under ``doc_encoder``, built on first use and kept: Lucene impact
    index for a SPLADE encoder, exact faiss inner-product index for a dense one."""
    from zoo.retrieval.index import build_index

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
                           progress=False, keep_vectors=True, isolate=True)  # a dense encoder: faiss, in here
        cache[key] = (folder, path)  # the TemporaryDirectory object lives as long as the data module
    return cache[key][1]


@torch.no_grad()
def evaluate_retrieval(datamodule, query_encoder, split: str, prefix: str, doc_encoder,
                       query_kind: str = "conversation") -> dict[str, float]:
    from zoo.retrieval.evaluate import evaluate
    from zoo.retrieval.search import search

    device = next(query_encoder.parameters()).device
    doc_encoder.to(device)
    index = corpus_index(datamodule, doc_encoder)
    queries = datamodule.queries(split, query_kind)
    max_length = datamodule.cfg.get("eval_max_length_query")
    run = search(index, query_encoder, queries, k=int(datamodule.cfg.get("eval_k", 100)), max_length=max_length,
                 isolate=True)
    metrics = evaluate(run, datamodule.qrels(split))
    return {f"{prefix}/{name}": float(metrics[name]) for name in METRICS}


@torch.no_grad()
def teacher_train_run(datamodule, teacher, say=print) -> Path:
    """The teacher's TREC run for the train split: its rewrites searched in the corpus index under the teacher
    (the document encoder), ``negatives.window[1]`` deep. Stored once under ``<ZOO_HOME>/teacher_runs/``, keyed by
    the teacher's weights, the data and the depth, and read back by later runs."""
    import json

    from zoo.paths import zoo_home
    from zoo.records import atomic_write_text
    from zoo.retrieval.evaluate import write_trec_run
    from zoo.retrieval.search import search

    cfg = datamodule.cfg
    depth = int(cfg.negatives.window[1])
    key = {"teacher": weights_digest(teacher), "data": datamodule.fingerprint, "depth": depth,
           "max_length_query": cfg.get("eval_max_length_query"), "max_length_doc": cfg.get("eval_max_length_doc"),
           "title_sep": str(cfg.get("title_sep", ". "))}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = zoo_home() / "teacher_runs" / f"{getattr(teacher, 'name', 'teacher')}-{digest}.trec"
    if path.is_file():
        return path
    queries = datamodule.queries("train", "rewrite")
    if not queries:
        from zoo.errors import DataError

        raise DataError("data.teacher_runs names 'teacher' but the train split has no rewrites for it to read")
    say(f"teacher run: {len(queries)} train rewrites searched {depth} deep -> {path}")
    teacher.eval()
    run = search(corpus_index(datamodule, teacher), teacher, queries, k=depth,
                 max_length=cfg.get("eval_max_length_query"), isolate=True)
    tmp = write_trec_run(run, path.with_name(f".{path.name}.tmp"), tag="teacher")
    os.replace(tmp, path)  # atomic: a half-written run is never read back
    atomic_write_text(path.with_suffix(".json"), json.dumps(key, indent=2, sort_keys=True))
    return path
