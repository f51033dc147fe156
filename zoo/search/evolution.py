"""Regularised (ageing) evolution (Real et al., AAAI 2019) as DisWOT's NAS-Bench-201 searcher runs it: a population
of ``population`` candidates under the budget; each cycle draws ``sample`` of them, takes a parent at random among
the ``parents`` best of that sample, mutates one stage (``Space.mutate``; a child over budget is drawn again), adds
the child and drops the oldest member. The answer is the best-scoring candidate ever evaluated (top-1 by score:
the official searcher's last step, choosing among its top 5 by ground-truth accuracy, would peek at the answer).

The state (population, every score, cycle, random generator) is written to ``state_path`` after every cycle, so a
killed search resumes where it was and ends where an unbroken one would.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_write_text
from zoo.search.space import Genes, Space


def evolve(space: Space, score: Callable[[Genes], float], allowed: Callable[[Genes], bool], seed: int,
           population: int = 36, sample: int = 8, parents: int = 5, cycles: int = 200,
           state_path: Path | None = None) -> tuple[Genes, dict[str, float]]:
    """The best candidate found and every evaluated candidate's score (name -> score)."""
    state = _load(state_path) if state_path is not None and state_path.is_file() else None
    rng = np.random.default_rng(seed)
    if state is None:
        pool = [g for g in space.all_genes() if allowed(g)]
        picks = rng.choice(len(pool), size=min(population, len(pool)), replace=False)
        members = [pool[i] for i in picks]
        scores = {g.name: score(g) for g in members}
        cycle = 0
    else:
        members, scores, cycle = state["members"], state["scores"], state["cycle"]
        rng.bit_generator.state = state["rng"]
    while cycle < cycles:
        drawn = [members[i] for i in rng.choice(len(members), size=min(sample, len(members)), replace=False)]
        best = sorted(drawn, key=lambda g: scores[g.name], reverse=True)[:parents]
        parent = best[rng.integers(len(best))]
        child = space.mutate(parent, rng)
        for _ in range(100):  # a child over budget is drawn again
            if allowed(child):
                break
            child = space.mutate(parent, rng)
        else:
            child = parent
        if child.name not in scores:
            scores[child.name] = score(child)
        members = members[1:] + [child]  # the oldest goes
        cycle += 1
        if state_path is not None:
            _save(state_path, members, scores, cycle, rng)
    winner = max((g for g in _genes_of(space, scores)), key=lambda g: scores[g.name])
    return winner, scores


def _genes_of(space: Space, scores: dict[str, float]) -> list[Genes]:
    by_name = {g.name: g for g in space.all_genes()}
    return [by_name[name] for name in scores]


def _save(path: Path, members: list[Genes], scores: dict[str, float], cycle: int, rng) -> None:
    state: dict[str, Any] = {"members": [[list(g.depths), list(g.widths)] for g in members], "scores": scores,
                             "cycle": cycle, "rng": rng.bit_generator.state}
    atomic_write_text(path, json.dumps(state))


def _load(path: Path) -> dict[str, Any]:
    state = json.loads(path.read_text())
    state["members"] = [Genes(tuple(d), tuple(w)) for d, w in state["members"]]
    return state
