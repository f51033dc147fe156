"""dense_ce: the dense retrieval baseline beside DiSCo (issue: "a dense baseline, all-MiniLM-L6-v2 + faiss, on the
same data for comparison").

A dense query encoder Q (``dense.minilm``: mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings, zoo/archs/dense.py)
reads the raw conversation; a frozen copy D of its starting weights encodes the documents (so the corpus index is
built once, as for SPLADE); the candidates are the data side's, the same as the SPLADE arms'. Loss: the in-batch
contrastive term of DiSCo's L_CE on scaled cosine similarities,

    s(c, d) = σ · cos(Q(c), D(d))
    L = (1/B) Σ_b −log( e^{s(c_b, d+)} / (e^{s(c_b, d+)} + Σ_{n ∈ negatives of the whole batch} e^{s(c_b, n)}) )

with σ = ``scale`` (20, the scale of sentence-transformers' MultipleNegativesRankingLoss, with which
all-MiniLM-L6-v2 was trained: cosines lie in [-1, 1], so without it the softmax is nearly flat). No teacher
score enters the loss; the teachers are loaded only because the data side mines the candidates with them
(``data.teacher_runs``). ``trainer.max_epochs=0`` evaluates all-MiniLM-L6-v2 as it ships (zero-shot).
Evaluation indexes the corpus under D in an exact faiss inner-product index (zoo/retrieval/dense.py) and
searches it with Q; ``zoo index`` / ``zoo search`` do the same. There is no ONNX export for it yet.

Switches (``method.*``): ``scale`` σ (20.0); ``max_length_query``, ``max_length_doc``, ``doc_cache``, ``doc_batch``,
``query`` as in ``disco``. ``doc_encoder`` must be ``student_copy`` and ``init_from_teacher`` false: a SPLADE
teacher can be neither the document encoder nor the starting point of a dense student.
"""

from typing import Any

import torch

from zoo.errors import ConfigError
from zoo.methods.disco import DiSCo, inbatch_contrastive
from zoo.registry import METHODS


@METHODS.register("dense_ce")
class DenseCE(DiSCo):
    ignored_settings = ("w_kd", "w_ce", "temperature", "fusion", "teacher_scores", "flops_q", "l1_q",
                        "reg_warmup_steps", "anti_zero")  # kept in its YAML for disco's overrides; unused here
    teacher_use = "mined the candidates only"  # leaderboard teacher column: nothing is distilled from it

    def __init__(self, student, teachers, context):
        method_cfg = context.method
        if str(method_cfg.get("doc_encoder", "student_copy")) != "student_copy":
            raise ConfigError("dense_ce encodes documents with a frozen copy of the dense student",
                              "set method.doc_encoder=student_copy")
        if bool(method_cfg.get("init_from_teacher", False)):
            raise ConfigError("dense_ce cannot start from a SPLADE teacher's weights",
                              "set method.init_from_teacher=false (the dense student starts from student.arch)")
        super().__init__(student, teachers, context)
        self.w_kd, self.w_ce = 0.0, 1.0  # no distillation
        self.scale = float(self.method_cfg.get("scale", 20.0))

    @staticmethod
    def check_encoders(student, teachers) -> None:
        from zoo.archs.dense import DenseEncoder

        if not isinstance(student, DenseEncoder):
            raise ConfigError(f"dense_ce needs a dense encoder (zoo.archs.dense), got {type(student).__name__}",
                              "use student.arch=dense.minilm")

    @staticmethod
    def check_vocabularies(student, others) -> None:
        pass  # the teachers only mine candidates on the data side; D is a copy of the student

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        doc_reps = self.encode_docs(batch["docs"])
        query_reps = self.student.encode(batch[self.query_key], self.max_q)
        return {"ce": inbatch_contrastive(self.scale * query_reps, doc_reps)}
