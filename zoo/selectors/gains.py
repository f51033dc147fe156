"""Informativeness of a pool point to the current student, from its class probabilities (higher: more to learn).

- margin: g = 1 - (p_top1 - p_top2), in [0, 1]; RAD's default gain (the spec's reading, unconfirmed);
- entropy: g = -sum_c p_c log p_c, in [0, log C].
"""

import torch


def margin(probs: torch.Tensor) -> torch.Tensor:
    best = probs.topk(2, dim=1).values
    return 1.0 - (best[:, 0] - best[:, 1])


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)


GAINS = {"margin": margin, "entropy": entropy}
