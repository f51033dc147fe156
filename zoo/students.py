"""The student as a run starts it: its arch (``student.arch``, ``student.kwargs``), the run seed, and its starting
weights: ``student.weights``, else ``student.init_recipe``'s stored weights (trained once, ``zoo.recipes``), else the
arch's own initialisation (published weights with ``student.pretrained``, or random).

Training and every later rebuild of the starting point (``zoo eval`` / ``zoo index`` of a retrieval run whose
document encoder is a frozen copy of the student as it started) come through ``create_student``, so both see the
same model.
"""

from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

from zoo.archs import arch_kwargs, create, student_arch_kwargs
from zoo.archs.text import with_data_tokenizer
from zoo.recipes import announce_training, trained_once
from zoo.weights import load_weights


def trained_student_init(cfg: Any, datamodule, say=print) -> Path:
    """The student's starting weights from ``student.init_recipe``: CE-trained once, then reused by every arm.

    MEAL V2's finding is that soft labels need a good initialisation; every arm of a
    reproduce starts from the same file, so the comparison is of what comes after it.
    """
    kwargs = with_data_tokenizer(cfg.student.arch, arch_kwargs(cfg.student), datamodule, "student")
    announce_training(cfg, datamodule, [(cfg.student.arch, cfg.student.init_recipe, "student init", kwargs)], say)
    path, _ = trained_once(cfg, cfg.student.arch, cfg.student.init_recipe, datamodule, say, role="student init",
                           kwargs=kwargs)
    return path


def student_start_weights(cfg: Any, datamodule, say=print) -> str | None:
    """The file the student starts from (see the module docstring), or None for the arch's own initialisation."""
    if cfg.student.weights:
        return str(cfg.student.weights)
    if cfg.student.get("init_recipe"):
        return str(trained_student_init(cfg, datamodule, say))
    return None


def create_student(cfg: Any, datamodule, weights: str | None) -> nn.Module:
    """The student as training starts it: the run seed, then the arch (published weights when
    ``student.pretrained``), then ``weights`` when given."""
    L.seed_everything(int(cfg.seed), verbose=False)  # a random start is the same one on every rebuild
    student = create(cfg.student.arch, datamodule.num_classes, datamodule.input_shape,
                     pretrained=bool(cfg.student.pretrained), **student_arch_kwargs(cfg, datamodule))
    if weights:
        load_weights(student, Path(weights))
    return student
