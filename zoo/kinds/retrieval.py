"""retrieval: texts in (a conversation, a query), a sparse or dense representation out, scored against a corpus.

Judged by full-corpus search: the collection is indexed with the run's frozen document encoder (a Lucene impact
index for SPLADE, exact faiss for dense encoders), the split's queries are searched with the student, and the run is
scored against the qrels (MRR@10, nDCG@3, Recall@10/100). A teacher is evaluated on its own input, the rewrites.
Negatives are drawn per epoch, so teacher outputs are not cached; a retrieval teacher's recipe must name its method
(e.g. ``splade_bi``); ``zoo export`` writes the query encoder with its tokenizer (export profiles do not apply).
"""

from zoo.export.retrieval import export_retrieval_run
from zoo.kinds import KINDS, Kind
from zoo.retrieval.evaluation import evaluate_retrieval
from zoo.retrieval.run_encoders import document_encoder


def evaluate(datamodule, models, split: str, device: str = "cpu", role: str = "student",
             limit_batches: int | None = None, doc_encoder=None):
    queries = "rewrite" if role == "teacher" else "conversation"
    limit = None if limit_batches is None else limit_batches * int(datamodule.cfg.eval_batch_size)
    return evaluate_retrieval(datamodule, models[0], split, split, doc_encoder or models[0], queries, limit)


def run_context(loaded_run) -> dict:
    return {"doc_encoder": document_encoder(loaded_run)}


def export(loaded_run, out, profile: str | None, say):
    return export_retrieval_run(loaded_run, out, say=say)  # query encoders have no export profiles


KINDS.register("retrieval")(Kind(
    name="retrieval", headline="mrr@10", evaluate=evaluate, teacher_cache=False, alone_method=None,
    run_context=run_context, export=export, export_profile=None))
