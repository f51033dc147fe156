"""disco: Lupart, Aliannejadi, Kanoulas, "DiSCo Meets LLMs: A Unified Approach for Sparse Retrieval and Contextual
Distillation in Conversational Search" (arXiv 2410.14609; SIGIR 2025 "DiSCo: LLM Knowledge Distillation for
Efficient Sparse Retrieval in Conversational Search"). Official code: github.com/SimonLupart/disco-conv-splade
(``IRTrainer.compute_loss``, ``L2I_Dataset``); spec: shared/methods/disco.md.

A SPLADE student query encoder Q_S reads the raw conversation c (current question first); frozen teacher(s) Q_T,k
read rewrites r_k of it (LLM or human); a frozen SPLADE document encoder D encodes the candidates [d+, d_1..d_N]
(positive first). With rep = SPLADE-max (``zoo.archs.splade``) and temperature τ:

    s_i   = <Q_S(c), D(d_i)>                          student scores, i = 0..N (i = 0 is d+)
    t_k,i = <Q_T,k(r_k), D(d_i)>                      teacher k's scores (or pre-computed: batch["teacher_scores"])
    t_i   = fuse_k t_k,i                              fusion ∈ {mean, sum, max} over the teachers that scored d_i
    L_KD  = (1/B) Σ_b Σ_i p_T,i (log p_T,i − log p_S,i),  p_T = softmax(t/τ), p_S = softmax(s/τ)   = KL(p_T ‖ p_S)
    L_CE  = (1/B) Σ_b −log( e^{s_+} / (e^{s_+} + Σ_{n ∈ negatives of the whole batch} e^{<Q_S(c_b), D(n)>}) )
    L     = w_kd·L_KD + w_ce·L_CE + λ_t·(flops_q·FLOPS(Q) + l1_q·L1(Q)) + [anti_zero] 1/(Σ Q)^2,
    λ_t   = min(1, (step/(T+1))^2)                    (the code's quadratic warm-up over T = reg_warmup_steps)

The KL is not multiplied by τ² (the code uses τ = 1 and no scaling). Other queries' positives are not negatives in
L_CE (as the code). Only the student is trained: D and the teachers stay in eval mode without gradients and out of
the state dict; D's own regularisers (FLOPS(D), 1/(Σ D)^2) are constants for a frozen D and are left out.

Batches (dict): ``conversation`` list[str] (B); ``docs`` list[list[str]] (B × (1+N), positive first); and either
``rewrites`` (list[str], one teacher, or list[list[str]], B × K rewrite sources) for online teacher scoring, or
``teacher_scores`` ([B, 1+N] or [B, K, 1+N], NaN = "this teacher did not score this doc") from pre-computed runs.
Texts are tokenized here with the student's tokenizer (query side) and D's (document side).

Switches (config ``method.*``; defaults = the released config):
- ``w_kd`` 0.99, ``w_ce`` 0.01: the code's default loss ``kldiv_contrastive_with_weights``. Whether the paper's
  table uses pure KL (w_ce = 0) is unconfirmed.
- ``temperature`` τ (1.0). Teacher scores are raw SPLADE dot products (~10-40): do not normalise them.
- ``fusion`` mean | sum | max | mean_probs (mean). The paper's multi-teacher fusion rule is UNCONFIRMED (the released
  two-teacher run is already fused); mean over available teachers is our default. ``sum`` sharpens the target by K
  relative to ``mean`` at τ = 1. ``mean_probs`` (mean of the teachers' softmaxes, MEAL-style) is our addition.
- ``teacher_scores`` auto | batch | online (auto): auto uses batch["teacher_scores"] when present.
- ``doc_encoder`` teacher | student_copy (teacher): D is the first teacher (SPLADE++ is both, as in the paper),
  or a frozen copy of the student taken at construction (same init).
- The candidates are the data side's (``data.negatives.count`` 16 and ``.window`` [10, 960]: negatives from the
  teacher's ranks 10..959, 0-based, half-open, the top 10 dropped against false negatives; zoo/data/conv_retrieval.py).
  ``sample_candidates`` below is the same rule for one query as a pure function.
- ``flops_q``, ``l1_q`` (0, 0: the released config has no sparsity regulariser; the paper's sweep values are
  unconfirmed), ``reg_warmup_steps`` T (0), ``anti_zero`` (true, as the code; 1/(ΣQ)^2 with ΣQ clamped at 1e-2).
- ``max_length_query``, ``max_length_doc`` (256, 256), ``doc_batch`` (32): docs per frozen forward pass.
- ``init_from_teacher`` (false): start the student from the first teacher's weights, as the paper starts the student
  from SPLADE++ (the teacher's encoder). On the mini set the teacher is a bi-encoder trained on rewrites.
- ``doc_cache`` (0): keep up to this many frozen document representations in memory, keyed by text (dense on the
  CPU: |V| floats each, so only for small corpora such as the mini set); 0 = encode every candidate every step.
- ``query`` conversation | rewrite (conversation): which text the student reads.
"""

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zoo.data.trec import FUSION_RULES
from zoo.errors import ConfigError, DataError
from zoo.methods.base import DistillModule
from zoo.registry import METHODS

FUSIONS = (*FUSION_RULES, "mean_probs")  # the run files' rules, on scores computed online, and MEAL-style probs


# -- the loss, as pure functions ---------------------------------------------------------------------------------
def fuse_scores(teacher_scores: torch.Tensor, fusion: str = "mean") -> torch.Tensor:
    """[B, K, C] teacher scores -> [B, C] by mean / sum / max over the teachers; NaN entries are skipped.

    A candidate no teacher scored stays NaN (the caller must not produce one)."""
    if fusion not in FUSION_RULES:
        raise ConfigError(f"unknown score fusion '{fusion}'", "method.fusion is one of mean, sum, max, mean_probs")
    present = ~torch.isnan(teacher_scores)
    filled = torch.where(present, teacher_scores, torch.zeros_like(teacher_scores))
    count = present.sum(dim=1)
    if fusion == "sum":
        fused = filled.sum(dim=1)
    elif fusion == "mean":
        fused = filled.sum(dim=1) / count.clamp(min=1)
    else:
        fused = torch.where(present, teacher_scores, torch.full_like(teacher_scores, -math.inf)).amax(dim=1)
    return torch.where(count > 0, fused, torch.full_like(fused, math.nan))


def teacher_log_probs(teacher_scores: torch.Tensor, temperature: float = 1.0, fusion: str = "mean") -> torch.Tensor:
    """log p_T over the candidates: [B, C] scores, or [B, K, C] for K teachers fused by ``fusion``."""
    scores = teacher_scores.detach().float()
    if scores.dim() == 2:
        return F.log_softmax(scores / temperature, dim=-1)
    if fusion == "mean_probs":
        if torch.isnan(scores).any():
            raise DataError("fusion 'mean_probs' needs every teacher's score for every candidate (NaN found)")
        per_teacher = F.log_softmax(scores / temperature, dim=-1)
        return torch.logsumexp(per_teacher, dim=1) - math.log(scores.shape[1])
    return F.log_softmax(fuse_scores(scores, fusion) / temperature, dim=-1)


def disco_kl(student_scores: torch.Tensor, teacher_scores: torch.Tensor, temperature: float = 1.0,
             fusion: str = "mean") -> torch.Tensor:
    """L_KD = (1/B) Σ_b Σ_i p_T,i (log p_T,i − log p_S,i) over [positive + negatives], no τ² factor.

    student_scores [B, C]; teacher_scores [B, C] or [B, K, C]."""
    log_pt = teacher_log_probs(teacher_scores, temperature, fusion)
    log_ps = F.log_softmax(student_scores.float() / temperature, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1).mean()


def candidate_scores(query_reps: torch.Tensor, doc_reps: torch.Tensor) -> torch.Tensor:
    """[B, V] queries · [B, C, V] their own candidates -> [B, C] dot products."""
    return torch.einsum("bv,bcv->bc", query_reps, doc_reps.to(query_reps.dtype))


def inbatch_contrastive(query_reps: torch.Tensor, doc_reps: torch.Tensor) -> torch.Tensor:
    """L_CE: each query's positive (doc_reps[b, 0]) against the negatives (doc_reps[:, 1:]) of the whole batch."""
    doc_reps = doc_reps.to(query_reps.dtype)
    positive = (query_reps * doc_reps[:, 0]).sum(dim=-1, keepdim=True)                  # [B, 1]
    negatives = query_reps @ doc_reps[:, 1:].reshape(-1, doc_reps.shape[-1]).T          # [B, B·N]
    logits = torch.cat([positive, negatives], dim=1).float()
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def anti_zero(reps: torch.Tensor, floor: float = 1e-2) -> torch.Tensor:
    """The code's 1/(Σ W)^2 term, with Σ W clamped at ``floor`` so that an all-zero batch cannot explode."""
    return 1.0 / reps.float().sum().clamp(min=floor).pow(2)


def reg_factor(step: int, warmup_steps: int) -> float:
    """λ_t / λ = min(1, (step / (T + 1))^2), the code's quadratic warm-up (T = 0: 0 at step 0, then 1)."""
    return min(1.0, (step / (warmup_steps + 1)) ** 2)


# -- the data side's sampling rule, for one query --------------------------------------------------------------------
def sample_candidates(teacher_run: Mapping[str, float], qrels: Mapping[str, int], n_negatives: int = 16,
                      rank_window: Sequence[int] = (10, 960), rng: random.Random | None = None,
                      ) -> tuple[str, list[str], list[float]]:
    """One training example as the code's ``L2I_Dataset`` builds it, for one query.

    teacher_run {docid: teacher score}; qrels {docid: rel}. Candidates = the teacher's docs sorted by score, ranks
    ``rank_window`` (0-based, half-open). d+ is drawn uniformly from docs with rel >= 1; N negatives uniformly
    without replacement from the candidates that are not positives (with replacement when no more than N remain).
    Teacher target: [t(d+), t(d_1)..t(d_N)], t(d+) = the max kept candidate score when d+ is not a kept candidate.
    Returns (d+, [d_1..d_N], targets)."""
    rng = rng or random.Random()
    positives = [docid for docid, rel in qrels.items() if rel >= 1]
    if not positives:
        raise DataError("sample_candidates: the query has no relevant document (rel >= 1)")
    ranked = sorted(teacher_run.items(), key=lambda item: -item[1])[int(rank_window[0]):int(rank_window[1])]
    kept = dict(ranked)
    pool = [docid for docid, _ in ranked if docid not in set(positives)]
    if not pool:
        raise DataError(f"sample_candidates: no negative left in teacher ranks {list(rank_window)}",
                        "lower the window's start or retrieve deeper teacher runs")
    negatives = rng.sample(pool, n_negatives) if len(pool) > n_negatives else rng.choices(pool, k=n_negatives)
    positive = rng.choice(positives)
    targets = [kept.get(positive, max(kept.values())), *(kept[docid] for docid in negatives)]
    return positive, negatives, targets


# -- the LightningModule -----------------------------------------------------------------------------------------
@METHODS.register("disco")
class DiSCo(DistillModule):
    kinds = ("retrieval",)

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        from zoo.archs.splade import frozen_copy

        self.check_encoders(student, self.teachers)
        cfg = self.method_cfg
        self.temperature = float(cfg.get("temperature", 1.0))
        self.fusion = str(cfg.get("fusion", "mean"))
        if self.fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion '{self.fusion}'", f"method.fusion is one of {', '.join(FUSIONS)}")
        self.score_source = str(cfg.get("teacher_scores", "auto"))
        if self.score_source not in ("auto", "batch", "online"):
            raise ConfigError(f"unknown teacher_scores '{self.score_source}'",
                              "method.teacher_scores is one of auto, batch, online")
        self.max_q = int(cfg.get("max_length_query", 256))
        self.max_d = int(cfg.get("max_length_doc", 256))
        self.doc_batch = int(cfg.get("doc_batch", 32))
        self.flops_q, self.l1_q = float(cfg.get("flops_q", 0.0)), float(cfg.get("l1_q", 0.0))
        self.reg_warmup = int(cfg.get("reg_warmup_steps", 0))
        self.use_anti_zero = bool(cfg.get("anti_zero", True))
        self.w_kd, self.w_ce = float(cfg.get("w_kd", 0.99)), float(cfg.get("w_ce", 0.01))
        which = str(cfg.get("doc_encoder", "teacher"))
        if which == "teacher":
            doc_encoder = self.teachers[0]
        elif which == "student_copy":
            doc_encoder = frozen_copy(student)
        else:
            raise ConfigError(f"unknown doc_encoder '{which}'", "method.doc_encoder is one of teacher, student_copy")
        # A list, like the teachers: D stays out of state_dict and out of module.train(), so it keeps eval mode
        # (no dropout: the index is built in eval mode). The student trains in train mode (dropout on, as the
        # official HF Trainer); the zoo's builders return encoders in eval mode and Lightning keeps modes as found.
        self.doc_encoders = [doc_encoder.eval().requires_grad_(False)]
        student.train()
        if bool(cfg.get("init_from_teacher", False)):
            student.load_state_dict(self.teachers[0].state_dict())
        self.doc_cache_size = int(cfg.get("doc_cache", 0))
        self._doc_cache: dict[str, torch.Tensor] = {}
        self.query_key = {"conversation": "conversation", "rewrite": "rewrites"}[str(cfg.get("query", "conversation"))]
        self.check_vocabularies(student, [*self.teachers, doc_encoder])

    @staticmethod
    def check_encoders(student, teachers) -> None:
        from zoo.archs.splade import SpladeEncoder

        for model in [student, *teachers]:
            if not isinstance(model, SpladeEncoder):
                raise ConfigError(f"DiSCo needs SPLADE encoders (zoo.archs.splade), got {type(model).__name__}",
                                  "use student.arch / teacher.arch splade.* with a conversational data set")

    @staticmethod
    def check_vocabularies(student, others) -> None:
        """Scores are dot products over terms: the student, the teachers and D must share one vocabulary."""
        for model in others:
            if model.vocab_size != student.vocab_size:
                raise ConfigError(f"DiSCo needs one vocabulary: student has {student.vocab_size} terms, "
                                  f"{model.name} has {model.vocab_size}")

    @property
    def doc_encoder(self):
        return self.doc_encoders[0]

    def evaluation_context(self) -> dict[str, Any]:
        return {"doc_encoder": self.doc_encoder}  # the corpus is indexed with the frozen document encoder

    def _move_teachers(self) -> None:
        super()._move_teachers()
        self.doc_encoder.to(self.device).eval()

    def forward(self, conversation: Sequence[str]) -> torch.Tensor:
        return self.student.encode(conversation, self.max_q)

    def batch_size(self, batch) -> int:
        return len(batch["conversation"])

    # -- encoding and scores -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_docs(self, docs: Sequence[Sequence[str]]) -> torch.Tensor:
        """B × C texts -> [B, C, |V|] with the frozen document encoder."""
        sizes = {len(row) for row in docs}
        if len(sizes) != 1:
            raise DataError(f"every query needs the same number of candidates (positive + negatives), got {sizes}")
        flat = [text for row in docs for text in row]
        if self.doc_cache_size > 0:
            reps = self._cached_docs(flat)
        else:
            reps = self.doc_encoder.encode(flat, self.max_d, batch_size=self.doc_batch)
        return reps.reshape(len(docs), sizes.pop(), -1)

    def _cached_docs(self, texts: list[str]) -> torch.Tensor:
        """The frozen encoder's reps of ``texts`` through a bounded in-memory cache (the encoder never changes)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self._doc_cache))
        if todo:
            fresh = self.doc_encoder.encode(todo, self.max_d, batch_size=self.doc_batch)
            if len(self._doc_cache) + len(todo) <= self.doc_cache_size:
                self._doc_cache.update(zip(todo, fresh.cpu(), strict=True))
            else:  # full: serve this batch without storing it
                local = dict(zip(todo, fresh, strict=True))
                return torch.stack([local[t] if t in local else self._doc_cache[t].to(fresh.device) for t in texts])
        return torch.stack([self._doc_cache[t] for t in texts]).to(self.device)

    @torch.no_grad()
    def teacher_scores(self, batch: dict[str, Any], doc_reps: torch.Tensor) -> torch.Tensor:
        """[B, C] or [B, K, C] teacher scores: pre-computed from the batch, or the teachers on the rewrites."""
        given = batch.get("teacher_scores")
        if self.score_source == "batch" or (self.score_source == "auto" and given is not None):
            if given is None:
                raise DataError("method.teacher_scores=batch but the batch has no 'teacher_scores'")
            return torch.as_tensor(given, dtype=torch.float32, device=doc_reps.device)
        if "rewrites" not in batch:
            raise DataError("online teacher scoring needs batch['rewrites'] (or pass batch['teacher_scores'])")
        rewrites = batch["rewrites"]
        sources = [list(rewrites)] if isinstance(rewrites[0], str) else [list(r) for r in zip(*rewrites, strict=True)]
        if len(self.teachers) not in (1, len(sources)):
            raise ConfigError(f"{len(sources)} rewrite sources but {len(self.teachers)} teachers",
                              "give one teacher (shared by every rewrite source) or one per source")
        scores = []
        for k, texts in enumerate(sources):
            teacher = self.teachers[k if len(self.teachers) > 1 else 0]
            scores.append(candidate_scores(teacher.encode(texts, self.max_q).float(), doc_reps.float()))
        self.count_teacher_calls(len(sources), len(sources) * len(batch["conversation"]))
        return scores[0] if len(scores) == 1 else torch.stack(scores, dim=1)

    # -- losses --------------------------------------------------------------------------------------------------
    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        doc_reps = self.encode_docs(batch["docs"])
        query_reps = self.student.encode(batch[self.query_key], self.max_q)
        scores = candidate_scores(query_reps, doc_reps)
        losses = {"kd": disco_kl(scores, self.teacher_scores(batch, doc_reps), self.temperature, self.fusion)}
        if self.w_ce > 0:
            losses["ce"] = inbatch_contrastive(query_reps, doc_reps)
        return {**losses, **self.regularisers(query_reps)}

    def regularisers(self, query_reps: torch.Tensor) -> dict[str, torch.Tensor]:
        """The query-side sparsity terms that are switched on, and the anti-zero term (weighted in loss_weights)."""
        from zoo.archs.splade import flops_reg, l1_reg

        terms = {}
        if self.flops_q > 0:
            terms["flops_q"] = flops_reg(query_reps)
        if self.l1_q > 0:
            terms["l1_q"] = l1_reg(query_reps)
        if self.use_anti_zero:
            terms["anti_zero"] = anti_zero(query_reps)
        return terms

    def loss_weights(self) -> dict[str, float]:
        factor = reg_factor(int(self.global_step), self.reg_warmup)
        return {"kd": self.w_kd, "ce": self.w_ce, "flops_q": factor * self.flops_q, "l1_q": factor * self.l1_q,
                "anti_zero": 1.0}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """val/kd and val/candidate_mrr: the reciprocal rank of d+ among its own candidates by the student."""
        doc_reps = self.encode_docs(batch["docs"])
        scores = candidate_scores(self.student.encode(batch[self.query_key], self.max_q), doc_reps)
        size = self.batch_size(batch)
        rank = 1 + (scores[:, 1:] > scores[:, :1]).sum(dim=1).float()
        self.log("val/candidate_mrr", (1.0 / rank).mean(), on_epoch=True, prog_bar=True, batch_size=size)
        if self.w_kd > 0 and (batch.get("teacher_scores") is not None or "rewrites" in batch):
            kd = disco_kl(scores, self.teacher_scores(batch, doc_reps), self.temperature, self.fusion)
            self.log("val/kd", kd, on_epoch=True, batch_size=size)
