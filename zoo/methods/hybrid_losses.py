"""Hybrid Distill's losses and token choices on plain tensors (``zoo.methods.hybrid_distill`` wires them to models).

Attention maps are [B, h, N, N] probabilities (rows: queries, summing to 1), tokens [B, N, D]; the first ``prefix``
tokens are the CLS token (and any register tokens), the rest patch tokens. ``keep`` [B, K] holds the 0-based
indices of the patch tokens the student sees.
"""

import torch
import torch.nn.functional as F

from zoo.archs.vit import keep_positions
from zoo.errors import ConfigError

EPS = 1e-8  # keeps log() finite where a student probability underflows to 0


def restrict_attention(attention: torch.Tensor, keep: torch.Tensor | None, prefix: int = 1) -> torch.Tensor:
    """The rows and columns of the prefix tokens and the kept patches, each row re-normalised to sum to 1 over the
    kept keys: what the teacher's attention would be over the student's tokens if the dropped ones took no share."""
    if keep is None:
        return attention
    positions = keep_positions(keep, prefix)  # [B, M]
    batch, heads, _, length = attention.shape
    count = positions.shape[1]
    rows = attention.gather(2, positions[:, None, :, None].expand(batch, heads, count, length))
    kept = rows.gather(3, positions[:, None, None, :].expand(batch, heads, count, count))
    return kept / kept.sum(-1, keepdim=True).clamp_min(EPS)


def without_prefix(attention: torch.Tensor, prefix: int) -> torch.Tensor:
    """Patch-to-patch attention: the prefix rows and columns cut off, rows re-normalised."""
    patches = attention[:, :, prefix:, prefix:]
    return patches / patches.sum(-1, keepdim=True).clamp_min(EPS)


def relation_kl(student: torch.Tensor, teacher: torch.Tensor, rows: str = "mean") -> torch.Tensor:
    """KL(A_T ‖ A_S) of each head's attention row, averaged (``rows="mean"``) or summed (``"sum"``) over the query
    rows, averaged over heads and images; the teacher is a target, no gradient flows into it."""
    teacher = teacher.detach().float()
    student = student.float()
    terms = torch.where(teacher > 0, teacher * (teacher.clamp_min(EPS).log() - student.clamp_min(EPS).log()), 0.0)
    per_row = terms.sum(-1)  # [B, h, N]
    return per_row.sum(-1).mean() if rows == "sum" else per_row.mean()


def match_heads(student: torch.Tensor, teacher: torch.Tensor, head_map: str | None) -> tuple[torch.Tensor, ...]:
    """The two maps as compared: head by head (``head_map`` None; the counts must agree, checked when the method is
    built) or both averaged over heads (``average``)."""
    if head_map == "average":
        return student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    return student, teacher


def normalise_features(tokens: torch.Tensor, how: str) -> torch.Tensor:
    """Teacher tokens as regression targets: ``layernorm`` (per token, no affine: whitening, so a CLIP tower's scale
    and a DeiT's give targets of one scale) or ``none``."""
    return F.layer_norm(tokens, tokens.shape[-1:]) if how == "layernorm" else tokens


def feature_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """SmoothL1 (β = 1) or MSE between projected student tokens and teacher tokens, averaged over every element."""
    target = target.detach().float()
    if kind == "smooth_l1":
        return F.smooth_l1_loss(predicted.float(), target)
    return F.mse_loss(predicted.float(), target)


def select_tokens(tokens: torch.Tensor, keep: torch.Tensor | None, prefix: int = 1) -> torch.Tensor:
    """[B, prefix + K, D]: the prefix tokens and the kept patches of full-image tokens."""
    if keep is None:
        return tokens
    positions = keep_positions(keep, prefix)
    return tokens.gather(1, positions.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def kept_count(patches: int, ratio: float) -> int:
    """Patches kept when ``ratio`` of ``patches`` are dropped: at least one."""
    return max(1, patches - int(round(ratio * patches)))


def keep_by_score(scores: torch.Tensor, ratio: float) -> torch.Tensor | None:
    """[B, K] indices of the highest-scoring patches (``scores`` [B, P]), in ascending order; None when none is
    dropped. Ascending order keeps the student's tokens in image order."""
    patches = scores.shape[1]
    count = kept_count(patches, ratio)
    if count == patches:
        return None
    return scores.topk(count, dim=1).indices.sort(dim=1).values


def cls_attention(attention: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """[B, P]: how much the CLS query attends to each patch, averaged over heads (the token-importance ranking)."""
    return attention[:, :, 0, prefix:].mean(1)


def drop_ratio_at(step: int, total_steps: int, final: float, warmup: float) -> float:
    """The drop ratio of a step: rising linearly from 0 to ``final`` over the first ``warmup`` fraction of the
    stage's steps, then constant (``warmup`` 0: ``final`` from the first step)."""
    ramp = warmup * total_steps
    if ramp <= 0:
        return final
    return final * min(1.0, step / ramp)


def check_drop_ratio(ratio: float) -> float:
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"method.drop_ratio={ratio}: the fraction of patch tokens dropped must be in [0, 1)",
                          "0 keeps every token; 0.5 drops half of them by the end of the ramp")
    return ratio


def layer_pairs(student_layers, teacher_layers, student_depth: int, teacher_depth: int) -> list[tuple[int, int]]:
    """(student block, MIM-teacher block) pairs, 1-based, of the relation loss. ``student_layers`` None: every block
    but the last (the spec's "intermediate layers"); ``teacher_layers`` None: the same numbers when the depths agree,
    scaled by the depth ratio when the teacher's depth is a multiple of the student's."""
    chosen = list(range(1, student_depth)) if student_layers is None else [int(n) for n in student_layers]
    if not chosen or not all(1 <= n <= student_depth for n in chosen):
        raise ConfigError(f"method.relation_layers={chosen} is outside the student's {student_depth} blocks",
                          f"give block numbers in 1..{student_depth}, or null (every block but the last)")
    if teacher_layers is None:
        if teacher_depth % student_depth:
            raise ConfigError(f"method.relation_layers: the MIM teacher's {teacher_depth} blocks are no multiple of "
                              f"the student's {student_depth}",
                              f"give method.teacher_layers, one block in 1..{teacher_depth} per student block")
        matched = [n * teacher_depth // student_depth for n in chosen]
    else:
        matched = [int(n) for n in teacher_layers]
    if len(matched) != len(chosen) or not all(1 <= n <= teacher_depth for n in matched):
        raise ConfigError(f"method.teacher_layers={matched} does not fit: {len(chosen)} student block(s), a "
                          f"{teacher_depth}-block MIM teacher",
                          f"give {len(chosen)} block numbers in 1..{teacher_depth}, or null")
    return list(zip(chosen, matched, strict=True))
