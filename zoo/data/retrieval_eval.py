"""Full-corpus retrieval evaluation of a conversational data module (``ConvRetrievalDataModule.evaluate``).

The corpus the module holds is encoded with the frozen document encoder into a Lucene impact index
(``zoo.retrieval.index.build_index``, quantised weights, pyserini in-process: one JVM per process), the split's
queries are encoded by the query encoder and searched (top ``data.eval_k``, default 100), and the run is scored
against the split's qrels with ir_measures: MRR@10, nDCG@3, Recall@10, Recall@100 (``<prefix>/<metric>``).

The whole collection file (``data.corpus``; for the mini set its corpus.jsonl) is indexed, not only the documents
the training side holds, so every document competes. ``data.eval_index`` (optional) names an index built earlier
by ``zoo index`` with the same document encoder, which is then searched as it is.

The index is built once per document encoder and kept (in a temporary folder) on the data module: a run evaluates
val and test, and the teacher, with the same frozen encoder, so re-encoding the corpus each time would only cost.
It is keyed by the encoder object and a checksum of its weights, so a document encoder that was trained in
between (a bi-encoder recipe) gets a fresh index.
"""

import hashlib
import tempfile
from pathlib import Path

import torch

METRICS = ("mrr@10", "ndcg@3", "recall@10", "recall@100")


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().float().sum().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def corpus_index(datamodule, doc_encoder) -> Path:
    """The Lucene index of ``datamodule``'s documents under ``doc_encoder``, built on first use and kept."""
    from zoo.data.trec import iter_corpus, passage_text
    from zoo.retrieval.index import build_index

    given = datamodule.cfg.get("eval_index")
    if given:
        return Path(str(given)).expanduser()
    key = (id(doc_encoder), weights_digest(doc_encoder))
    cache = datamodule.__dict__.setdefault("_zoo_indexes", {})
    if key not in cache:
        folder = tempfile.TemporaryDirectory(prefix="zoo-eval-index-")
        sep = str(datamodule.cfg.get("title_sep", ". "))
        corpus = ((doc.id, passage_text(doc, sep)) for doc in iter_corpus(datamodule.sources.corpus))
        max_length = datamodule.cfg.get("eval_max_length_doc")  # None = the encoder's own
        path = build_index(doc_encoder, corpus, Path(folder.name) / "index", max_length=max_length,
                           progress=False, keep_vectors=True)
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
    run = search(index, query_encoder, queries, k=int(datamodule.cfg.get("eval_k", 100)), max_length=max_length)
    metrics = evaluate(run, datamodule.qrels(split))
    return {f"{prefix}/{name}": float(metrics[name]) for name in METRICS}
