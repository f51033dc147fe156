"""A search run (``zoo find-student``, DisWOT): the candidates of the task's search space scored for its teacher
without training, the best one under the budget picked, the whole ranking written where a later ``zoo train``
finds it.

A task with a ``search`` block names the space (``search.space``: a config group, ``tasks/space/``), the budget
(``search.budget.mflops`` / ``params``), the proxy that picks (``search.proxy``: ``diswot`` by default; see
``zoo.search.proxies.PROXIES``), the batches (drawn by ``search.batch_seed``) and seeds it is averaged over, how
the space is walked (``search.strategy``: ``exhaustive`` scores every candidate under the budget, ``evolution``
runs regularised evolution, ``zoo.search.evolution``) and whether the teacher is scored at random initialisation,
as DisWOT's code does (``search.teacher: random``), or with the task's trained weights (``trained``).

The run folder ``runs/<task>/<id>/`` gets ``search.json``: every scored candidate with its parameters, MFLOPs and
the mean and per-seed value of every proxy, the winner, and the seconds scoring took; evolution's state is kept
beside it (``evolution.json``) so a killed search resumes. ``zoo train`` on a task whose ``student.arch`` is null
runs the search first (seconds) and distils the winner.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.atomic import atomic_write_text
from zoo.errors import ConfigError, did_you_mean
from zoo.runs import prepare_run_dir
from zoo.search.proxies import PROXIES, UNEQUAL_WIDTH, Layers
from zoo.search.scoring import Scored, score_all, scoring_batches
from zoo.search.space import Space, measure, within_budget

STRATEGIES = ("exhaustive", "evolution")
TEACHERS = ("random", "trained")


@dataclass
class SearchResult:
    run_dir: Path
    winner: str
    summary: dict[str, Any]


def check_search(cfg: DictConfig) -> None:
    search = cfg.search
    if search.proxy not in PROXIES:
        raise ConfigError(f"unknown search.proxy '{search.proxy}'", did_you_mean(search.proxy, PROXIES, "proxies"))
    for key, valid in (("strategy", STRATEGIES), ("teacher", TEACHERS), ("unequal_width", UNEQUAL_WIDTH)):
        if search[key] not in valid:
            raise ConfigError(f"unknown search.{key} '{search[key]}'", did_you_mean(str(search[key]), valid, key))
    if int(search.batches) < 1 or int(search.batch_size) < 2 or not list(search.seeds):
        raise ConfigError("search needs at least one batch of two examples and one seed",
                          "set search.batches, search.batch_size and search.seeds")


def teacher_builder(cfg: DictConfig, datamodule, say):
    """The teacher as the search scores it: a fresh random one (DisWOT's code), or the task's trained teacher."""
    from zoo.archs import create
    from zoo.teachers import prepare_teachers, teacher_names

    names = teacher_names(cfg)
    if len(names) != 1:
        raise ConfigError(f"a search scores students against one teacher; this task has {len(names)}")
    if cfg.search.teacher == "random":
        return lambda: create(names[0], datamodule.num_classes, datamodule.input_shape)
    trained = prepare_teachers(cfg, datamodule, say)[0][0]
    state = {k: v.clone() for k, v in trained.state_dict().items()}

    def build():
        model = create(names[0], datamodule.num_classes, datamodule.input_shape)
        model.load_state_dict(state)
        return model

    return build


def find_student(cfg: DictConfig, say=print, write: bool = True) -> SearchResult:
    """Score the space, pick the winner; ``write=False`` keeps it out of a run folder (``zoo train``'s search)."""
    from zoo.archs import create
    from zoo.registry import DATASETS

    check_search(cfg)
    started = time.perf_counter()
    search, seed = cfg.search, int(cfg.seed)
    datamodule = DATASETS.get(cfg.data.name)(cfg.data, shuffle_seed=seed)
    space = Space.from_config(search.space)
    everything = measure(space, datamodule.num_classes, datamodule.input_shape)
    allowed = within_budget(everything, search.budget.mflops, search.budget.params)
    build_teacher = teacher_builder(cfg, datamodule, say)
    # The batches follow search.batch_seed, not the run seed: every seed of a reproduce distils the same winner.
    batches = scoring_batches(datamodule.splits["train"], int(search.batches), int(search.batch_size),
                              int(search.batch_seed))
    layers = Layers(**OmegaConf.to_container(search.layers, resolve=True))
    seeds = [int(s) for s in search.seeds]

    def build(name: str):
        return create(name, datamodule.num_classes, datamodule.input_shape)

    def score(candidates):
        return score_all(candidates, build, build_teacher, batches, seeds, layers, str(search.unequal_width))

    run_dir = prepare_run_dir(cfg)[0] if write else None
    say(f"scoring {len(allowed)} of the {len(everything)} candidates of space {space.name} with {search.proxy} "
        f"({len(batches)} batch(es) of {search.batch_size}, seeds {seeds}, {search.strategy})")
    if search.strategy == "exhaustive":
        scored = score(allowed)
    else:
        from zoo.search.evolution import evolve

        by_name = {c.name: c for c in allowed}
        cache: dict[str, Scored] = {}

        def one(genes) -> float:
            cache[genes.name] = score([by_name[genes.name]])[0]
            return cache[genes.name].mean(search.proxy)

        evo = search.evolution
        evolve(space, one, lambda g: g.name in by_name, seed, int(evo.population), int(evo.sample),
               int(evo.parents), int(evo.cycles), run_dir / "evolution.json" if run_dir else None)
        scored = list(cache.values())
    ranked = sorted(scored, key=lambda s: s.mean(search.proxy), reverse=True)
    summary = {"task": cfg.task, "space": space.name, "proxy": search.proxy, "strategy": search.strategy,
               "budget": OmegaConf.to_container(search.budget, resolve=True), "seeds": seeds,
               "teacher": {"arch": cfg.teacher.arch, "weights": search.teacher}, "winner": ranked[0].candidate.name,
               "candidates_in_space": len(everything), "candidates_scored": len(scored),
               "seconds": round(time.perf_counter() - started, 3),
               "ranking": [entry(s) for s in ranked]}
    if run_dir is not None:
        atomic_write_text(run_dir / "search.json", json.dumps(summary, indent=2) + "\n")
    return SearchResult(run_dir, ranked[0].candidate.name, summary)


def entry(scored: Scored) -> dict[str, Any]:
    c = scored.candidate
    return {"name": c.name, "params": c.params, "mflops": round(c.mflops, 4), "seconds": round(scored.seconds, 4),
            "scores": {proxy: round(scored.mean(proxy), 8) for proxy in scored.values},
            "per_seed": {proxy: [round(v, 8) for v in values] for proxy, values in scored.values.items()}}
