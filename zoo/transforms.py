"""Transforms of a student between the stages of a staged run (``zoo.staged``): a stage
``{name: upcycle, transform: {upcycle: {num_experts: 4, top_k: 2}}}`` changes the student's structure as the earlier
stages left it, and a rebuild of the finished student (``zoo.runs.load_run``) applies the same transforms, in order,
before its weights are read.

- ``upcycle``: LLaVA-MoD's upcycling of a dense decoder's FFNs into a sparse mixture of experts
  (``zoo.archs.moe.upcycle``).
"""

from typing import Any

from omegaconf import DictConfig, OmegaConf

TRANSFORMS = ("upcycle",)  # what a transform stage may name


def transform_functions(name: str):
    """(apply, check) of a transform's name: apply(student, **settings) changes the student in place; check(settings)
    refuses settings it cannot take, before anything trains."""
    from zoo.archs.moe import check_upcycle, upcycle

    return {"upcycle": (upcycle, check_upcycle)}[name]


def apply_transform(student, stage: dict[str, Any]):
    """The student changed by a transform stage's transform (in place)."""
    (name, settings), = stage["transform"].items()
    return transform_functions(name)[0](student, **(settings or {}))


def transformed_student(cfg: DictConfig, student):
    """The freshly built student of a staged run given the structure its transform stages gave it (its weights are
    read afterwards)."""
    for stage in OmegaConf.to_container(cfg.get("stages") or [], resolve=True):
        if isinstance(stage, dict) and "transform" in stage:
            apply_transform(student, stage)
    return student
