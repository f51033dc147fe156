"""SPLADE without distillation: the contrastive baselines of DiSCo (spec shared/methods/disco.md).

``splade_ce`` (the no-distillation arm): the same student, reading the same raw conversation, the same frozen
document encoder (the first teacher, as in ``disco``) and the same candidates, trained on the qrels alone with
DiSCo's in-batch contrastive term

    L_CE = (1/B) Σ_b −log( e^{s_+} / (e^{s_+} + Σ_{n ∈ negatives of the whole batch} e^{<Q_S(c_b), D(n)>}) )

(+ the same optional sparsity terms and anti-zero term). The teacher is used as document encoder and, with
``init_from_teacher``, as the starting point, never for scores: the arms differ in the loss alone.

``splade_bi``: a plain SPLADE bi-encoder with shared query/document weights trained by the same in-batch
contrastive loss, without any teacher. It is the recipe that makes a retrieval teacher (``teacher.recipe.method``,
reading rewrites), e.g. from all-MiniLM-L6-v2, whose MLM head is untrained (zoo/archs/splade.py). Documents are
encoded with gradients, so ``negatives`` (default 1) caps the negatives used per query to bound the cost; the
other queries' candidates are negatives too, as in L_CE.
"""

from typing import Any

import torch

from zoo.errors import ConfigError
from zoo.methods.base import DistillModule
from zoo.methods.disco import DiSCo, anti_zero, candidate_scores, inbatch_contrastive
from zoo.registry import METHODS


@METHODS.register("splade_ce")
class SpladeCE(DiSCo):
    # Kept in its YAML so that disco's overrides apply to every arm, but unused: not shown on leaderboards.
    ignored_settings = ("w_kd", "w_ce", "temperature", "fusion", "teacher_scores")

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        self.w_kd, self.w_ce = 0.0, 1.0  # no distillation, whatever the config says

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        doc_reps = self.encode_docs(batch["docs"])
        query_reps = self.student.encode(batch[self.query_key], self.max_q)
        return {"ce": inbatch_contrastive(query_reps, doc_reps), **self.regularisers(query_reps)}


@METHODS.register("splade_bi")
class SpladeBiEncoder(DistillModule):
    uses_teachers = False
    kinds = ("retrieval",)

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        from zoo.archs.splade import SpladeEncoder

        if not isinstance(student, SpladeEncoder):
            raise ConfigError(f"splade_bi needs a SPLADE encoder, got {type(student).__name__}")
        cfg = self.method_cfg
        self.query_key = {"conversation": "conversation", "rewrite": "rewrites"}[str(cfg.get("query", "rewrite"))]
        self.negatives = int(cfg.get("negatives", 1))
        self.max_q = int(cfg.get("max_length_query", 256))
        self.max_d = int(cfg.get("max_length_doc", 256))
        student.train()

    def batch_size(self, batch) -> int:
        return len(batch["conversation"])

    def forward(self, texts):
        return self.student.encode(texts, self.max_q)

    def _reps(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        docs = [row[: 1 + self.negatives] for row in batch["docs"]]
        flat = [text for row in docs for text in row]
        doc_reps = self.student.encode(flat, self.max_d).reshape(len(docs), len(docs[0]), -1)
        return self.student.encode(batch[self.query_key], self.max_q), doc_reps

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        query_reps, doc_reps = self._reps(batch)
        return {"ce": inbatch_contrastive(query_reps, doc_reps), "anti_zero": anti_zero(query_reps)}

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        query_reps, doc_reps = self._reps(batch)
        scores = candidate_scores(query_reps, doc_reps)
        rank = 1 + (scores[:, 1:] > scores[:, :1]).sum(dim=1).float()
        self.log("val/candidate_mrr", (1.0 / rank).mean(), on_epoch=True, batch_size=len(rank))
