"""hybrid_distill: Shi, Zhang, Wang, Li, Dai, Zou, Xiong & Tian, "Hybrid Distillation: Connecting Masked
Autoencoders with Contrastive Learners" (ICLR 2024; arXiv 2306.15876).

A ViT student learns, without labels, the token relations (attention maps) of a masked-image-modelling teacher T_m
at intermediate blocks, for diverse, local attention, and the last-layer tokens of a discriminative (supervised or
contrastive) teacher T_c, for discriminative features, while the least informative input tokens are dropped
progressively to save compute. It is then fine-tuned on labels: a staged run (``zoo.staged``; a distil stage with
losses ``relation`` and ``feature`` and the teachers ``[mim, discriminative]``, then a fine-tune stage with ``hard``).

With V the kept patch tokens (plus CLS), (l, n) the pairs of student and T_m blocks, A_h the attention
probabilities of head h:

    relation = (1/|pairs|) Σ_(l,n) (1/H) Σ_h mean_{query rows q} KL( Ã^{n,T_m}_h[q] ‖ A^{l,S}_h[q] )
    feature  = SmoothL1( proj(S^L(x_V)), LN(T_c^L(x))_V )
    hard     = CE(y, S(x))
    L        = w_relation · relation + w_feature · feature + w_hard · hard        (``method.losses``: α = w_relation)

Ã is T_m's attention on the whole image with the rows and columns of V kept and each row re-normalised over V;
S^L, T_c^L are the final tokens (after the final norm) of every kept position, CLS included; LN is a layer norm
without affine parameters; proj is learned with the student and dropped afterwards. Tokens are dropped by rank:
the head-averaged attention of T_c's CLS token to each patch in its last block (T_c sees the whole image); the
drop ratio rises linearly from 0 to ``drop_ratio`` over the first ``drop_warmup`` fraction of the stage's steps.

No code was released; the formulas are reconstructed, and each reading the spec marks unconfirmed is a switch
(``tasks/method/hybrid_distill.yaml``): the relation blocks, every block but the last (``relation_layers: null``),
paired with the teacher's blocks of the same numbers (``teacher_layers``); KL averaged over query rows
(``relation_rows: mean``; the spec writes a sum, which grows with the kept tokens) with the CLS row and column
included (``relation_cls``); T_m's attention restricted to V and re-normalised (``mim_input: full``) rather than
T_m run on V alone (``kept``, cheaper); unequal head counts are an error unless ``head_map: average`` compares
head-averaged maps; SmoothL1 (``feature_loss``), whitened targets (``teacher_norm: layernorm``), a linear projector
(``projector``); CLS-attention ranking (``drop_rank``, or ``random``), tokens dropped at the input only (not at
several depths); α = 1.

Teachers: two, in this order: the MIM teacher, then the discriminative one (a stage's ``teacher: [mim,
discriminative]``); a stage runs only those its losses need (T_c also ranks the tokens when they are dropped), T_m
only up to its deepest relation block, and counts their passes. Nothing is cached: per-block attention maps are
too big to store, and ImageNet crops are random. Only distillation steps drop tokens; the fine-tune stage and
evaluation see every token, as the exported model does. A relation-only stage leaves parts of the student without
a gradient: distributed, it needs ``trainer.strategy=ddp_find_unused_parameters_true``.

Diagnostics: after each stage of a staged run, the mean attention distance and the attention entropy per block and
head of the student and of the stage's teachers (``zoo.attention_distance``) go into the record, on
``diagnostic_images`` validation images.
"""

import torch
import torch.nn.functional as F
from torch import nn

from zoo.archs.vit import AttentionTaps, check_vit, depth, heads, patch_grid, prefix_tokens, vit_tokens, width
from zoo.errors import ConfigError
from zoo.methods.classification import ClassificationModule
from zoo.methods.hybrid_losses import (
    check_drop_ratio,
    cls_attention,
    drop_ratio_at,
    feature_loss,
    keep_by_score,
    layer_pairs,
    match_heads,
    normalise_features,
    relation_kl,
    restrict_attention,
    select_tokens,
    without_prefix,
)
from zoo.registry import METHODS

LOSSES = ("relation", "feature", "hard")
CHOICES = {"relation_rows": ("mean", "sum"), "mim_input": ("full", "kept"), "head_map": (None, "average"),
           "feature_loss": ("smooth_l1", "mse"), "teacher_norm": ("layernorm", "none"),
           "projector": ("linear", "mlp"), "drop_rank": ("cls_attention", "random")}


def make_projector(student_width: int, teacher_width: int, kind: str) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(student_width, teacher_width), nn.GELU(),
                             nn.Linear(teacher_width, teacher_width))
    return nn.Linear(student_width, teacher_width)


def same_tokens(student: nn.Module, teacher: nn.Module, role: str) -> None:
    """The student and a teacher see the image as the same tokens: their positions must match one to one."""
    mine, theirs = (patch_grid(student), prefix_tokens(student)), (patch_grid(teacher), prefix_tokens(teacher))
    if mine != theirs:
        raise ConfigError(f"the student sees {mine[0][0]}x{mine[0][1]} patches and {mine[1]} CLS/register token(s), "
                          f"the {role} {theirs[0][0]}x{theirs[0][1]} and {theirs[1]}",
                          "give both the same patch size and the same image size")


@METHODS.register("hybrid_distill")
class HybridDistill(ClassificationModule):
    kinds = ("image_classification",)
    loss_names = LOSSES

    @classmethod
    def needs_teachers(cls, method_cfg) -> bool:
        weights = method_cfg.get("losses") or {}
        return any(float(weights.get(name, 0.0)) > 0 for name in ("relation", "feature"))

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg = self.method_cfg
        self.cache = None  # see the module docstring: nothing of the teachers is cached
        self.weights = {name: float(value) for name, value in (cfg.losses or {}).items()}
        unknown = sorted(set(self.weights) - set(LOSSES))
        if unknown:
            raise ConfigError(f"hybrid_distill has no loss {', '.join(unknown)}", f"losses are {', '.join(LOSSES)}")
        for key, allowed in CHOICES.items():
            if cfg.get(key) not in allowed:
                raise ConfigError(f"method.{key}={cfg.get(key)}", f"one of {', '.join(map(str, allowed))}")
        self.settings = {key: cfg.get(key) for key in CHOICES} | {"relation_cls": bool(cfg.relation_cls)}
        self.drop_ratio, self.drop_warmup = check_drop_ratio(float(cfg.drop_ratio)), float(cfg.drop_warmup)
        self.diagnostic_images = int(cfg.diagnostic_images)
        self.prefix = prefix_tokens(check_vit(student, "student"))
        relation, feature = self.weights.get("relation", 0.0) > 0, self.weights.get("feature", 0.0) > 0
        if (relation or feature) and len(self.teachers) != 2:
            raise ConfigError(f"hybrid_distill distils from two teachers, the MIM teacher then the discriminative one; "
                              f"this stage has {len(self.teachers)}", "give the stage teacher: [mim, discriminative]")
        self.distilling = relation or feature
        self.dropping = self.distilling and self.drop_ratio > 0
        self.total_steps: int | None = None  # the stage's, once it trains
        self.pairs: list[tuple[int, int]] = []
        self.student_taps = self.mim_taps = self.rank_taps = None
        self.projector = None
        if relation:
            check_vit(self.mim, "MIM teacher")
            same_tokens(student, self.mim, "MIM teacher")
            self.pairs = layer_pairs(cfg.relation_layers, cfg.teacher_layers, depth(student), depth(self.mim))
            if self.settings["head_map"] is None and heads(student) != heads(self.mim):
                raise ConfigError(f"attention is compared head by head, and the student has {heads(student)} heads "
                                  f"a block, the MIM teacher {heads(self.mim)}",
                                  "set method.head_map=average (head-averaged maps), or match the head counts")
            self.student_taps = AttentionTaps(student, [m for m, _ in self.pairs])
            self.mim_taps = AttentionTaps(self.mim, sorted({n for _, n in self.pairs}))
        if feature or self.dropping:
            check_vit(self.discriminative, "discriminative teacher")
            same_tokens(student, self.discriminative, "discriminative teacher")
        if feature:
            self.projector = make_projector(width(student), width(self.discriminative), self.settings["projector"])
        if self.dropping and self.settings["drop_rank"] == "cls_attention":
            self.rank_taps = AttentionTaps(self.discriminative, [depth(self.discriminative)])

    # The teachers by role, as properties: a module assigned to an attribute would become a submodule (and its
    # weights part of every checkpoint); they stay in the plain list ``self.teachers``.
    @property
    def mim(self) -> nn.Module | None:
        return self.teachers[0] if self.distilling else None

    @property
    def discriminative(self) -> nn.Module | None:
        return self.teachers[1] if self.distilling else None

    # -- one step ------------------------------------------------------------------------------------------------
    def losses(self, batch):
        images = batch["inputs"]
        wanted = [name for name in LOSSES if self.weights.get(name, 0.0) > 0]
        keep, teacher_tokens = None, None
        if "feature" in wanted or self.dropping:
            with torch.no_grad():
                teacher_tokens = vit_tokens(self.discriminative, images)
            self.count_teacher_calls(1, len(images))
            keep = self.choose_tokens(images) if self.dropping else None
        tokens = vit_tokens(self.student, images, keep)
        losses = {}
        if "relation" in wanted:
            losses["relation"] = self.relation_loss(images, keep)
        if "feature" in wanted:
            target = normalise_features(select_tokens(teacher_tokens, keep, self.prefix), self.settings["teacher_norm"])
            losses["feature"] = feature_loss(self.projector(tokens), target, self.settings["feature_loss"])
        if "hard" in wanted:
            losses["hard"] = F.cross_entropy(self.student.forward_head(tokens), batch["targets"])
        return losses

    def loss_weights(self):
        return self.weights

    def current_drop_ratio(self) -> float:
        """The drop ratio of this step: the schedule's within a fit, the final ratio outside one."""
        if self.total_steps is None:
            return self.drop_ratio
        return drop_ratio_at(self.global_step, self.total_steps, self.drop_ratio, self.drop_warmup)

    def choose_tokens(self, images: torch.Tensor) -> torch.Tensor | None:
        """[B, K] patches the student sees this step (the discriminative teacher has just seen the images)."""
        ratio = self.current_drop_ratio()
        if self.rank_taps is None:  # drop_rank: random
            scores = torch.rand(len(images), self.discriminative.patch_embed.num_patches, device=images.device)
        else:
            scores = cls_attention(self.rank_taps.probs[depth(self.discriminative)], self.prefix)
        return keep_by_score(scores, ratio)

    def relation_loss(self, images: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        kept_only = self.settings["mim_input"] == "kept"
        with torch.no_grad():  # the teacher runs up to its deepest relation block only
            vit_tokens(self.mim, images, keep if kept_only else None, blocks=max(n for _, n in self.pairs))
        self.count_teacher_calls(1, len(images))
        total = 0.0
        for m, n in self.pairs:
            student, teacher = self.student_taps.probs[m], self.mim_taps.probs[n]
            if not kept_only:
                teacher = restrict_attention(teacher, keep, self.prefix)
            if not self.settings["relation_cls"]:
                student, teacher = without_prefix(student, self.prefix), without_prefix(teacher, self.prefix)
            student, teacher = match_heads(student, teacher, self.settings["head_map"])
            total = total + relation_kl(student, teacher, self.settings["relation_rows"])
        return total / len(self.pairs)

    # -- around the fit ------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        self.total_steps = int(self.trainer.estimated_stepping_batches)

    def parameter_groups(self):
        own = [] if self.projector is None else [{"params": list(self.projector.parameters())}]
        return super().parameter_groups() + own

    def close(self) -> None:
        super().close()
        for taps in (self.student_taps, self.mim_taps, self.rank_taps):
            if taps is not None:
                taps.remove()

    def stage_report(self, datamodule) -> dict:
        """The mean attention distance and entropy per block and head of the student and of this stage's
        teachers."""
        from zoo.attention_distance import attention_statistics

        images = first_images(datamodule, "val", self.diagnostic_images).to(self.device)
        models = {"student": self.student, "mim_teacher": self.mim, "discriminative_teacher": self.discriminative}
        found = {name: attention_statistics(model, images) for name, model in models.items() if model is not None}
        return {"attention_distance": {name: stats["distance"] for name, stats in found.items()},
                "attention_entropy": {name: stats["entropy"] for name, stats in found.items()}}


def first_images(datamodule, split: str, count: int) -> torch.Tensor:
    """The first ``count`` inputs of a split, in its order (the same images for every arm and seed)."""
    found, seen = [], 0
    for batch in datamodule.eval_loader(split):
        found.append(batch["inputs"][: count - seen])
        seen += len(found[-1])
        if seen >= count:
            break
    return torch.cat(found)
