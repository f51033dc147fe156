"""Every candidate of a space scored by every proxy (``zoo.search.proxies``), averaged over a few batches and seeds.

For each seed the teacher is built afresh (random initialisation, as DisWOT's code scores; ``teacher: trained``
loads the task's trained teacher instead) and its view of each batch taken once; each candidate is then built with
a seed of its own (the run seed and its name), so that a candidate's score does not depend on which others are
scored with it. Batches are the first ``batches`` x ``batch_size`` examples of a seeded permutation of the task's
training split.
"""

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from zoo.search.proxies import Layers, head_gradient, student_scores
from zoo.search.space import Candidate


@dataclass
class Scored:
    candidate: Candidate
    values: dict[str, list[float]] = field(default_factory=dict)  # proxy -> one mean over batches per seed
    seconds: float = 0.0                                          # scoring time, all seeds

    def mean(self, proxy: str) -> float:
        return float(np.mean(self.values[proxy]))


def scoring_batches(train_set, count: int, batch_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    order = np.random.default_rng([seed, 7]).permutation(len(train_set))[: count * batch_size]
    batches = []
    for i in range(count):
        batch = train_set.__getitems__(order[i * batch_size:(i + 1) * batch_size].tolist())
        batches.append((batch["inputs"], batch["targets"]))
    return batches


def candidate_seed(seed: int, name: str) -> int:
    return seed * 1_000_003 + zlib.crc32(name.encode())


def score_all(candidates: list[Candidate], build: Callable[[str], torch.nn.Module],
              build_teacher: Callable[[], torch.nn.Module], batches: list, seeds: list[int], layers: Layers,
              unequal_width: str = "class_gram", progress: Callable[[str], None] | None = None) -> list[Scored]:
    """``build(name)`` makes a candidate, ``build_teacher()`` the teacher (each called after seeding)."""
    scored = {c.name: Scored(c) for c in candidates}
    for seed in seeds:
        torch.manual_seed(seed)
        teacher = build_teacher()
        views = [head_gradient(teacher, x, y, layers, "teacher") for x, y in batches]
        for i, candidate in enumerate(candidates):
            started = time.perf_counter()
            torch.manual_seed(candidate_seed(seed, candidate.name))
            student = build(candidate.name)
            runs = [student_scores(student, view, x, y, layers, unequal_width)
                    for view, (x, y) in zip(views, batches, strict=True)]
            entry = scored[candidate.name]
            for proxy in runs[0]:
                entry.values.setdefault(proxy, []).append(float(np.mean([r[proxy] for r in runs])))
            entry.values.setdefault("params", []).append(float(candidate.params))
            entry.values.setdefault("flops", []).append(float(candidate.flops or 0))
            entry.values.setdefault("random", []).append(
                float(np.random.default_rng(candidate_seed(seed, candidate.name)).random()))
            entry.seconds += time.perf_counter() - started
            if progress is not None:
                progress(f"seed {seed}: {i + 1}/{len(candidates)} {candidate.name}")
    return list(scored.values())
