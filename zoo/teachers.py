"""Teachers: loaded from weight files, taken from the arch's published weights, or trained once by their own
recipe (``teacher.recipe``, ``zoo.recipes``) and reused by every later run, arm and seed.

``prepare_teachers`` returns the frozen teachers, their record entries (name, parameters, FLOPs, where the weights
came from) and their test metrics on the task's data (a lone recipe teacher's are the ones measured when it was
trained).
"""

from pathlib import Path
from typing import Any

from torch import nn

from zoo.archs import arch_kwargs, count_flops, count_params, create
from zoo.archs.text import with_data_tokenizer
from zoo.errors import ConfigError
from zoo.evaluation import eval_device, evaluate, headline, smoke_limit
from zoo.recipes import announce_training, stored_metrics, trained_once
from zoo.records import ModelInfo
from zoo.runs import check_accelerator
from zoo.weights import load_weights


def teacher_names(cfg: Any) -> list[str]:
    arch = cfg.teacher.arch
    return [arch] if isinstance(arch, str) else list(arch)


def prepare_teachers(cfg: Any, datamodule, say=print, measure: bool = True,
                     ) -> tuple[list[nn.Module], list[ModelInfo], dict[str, float]]:
    """``measure=False`` skips the test evaluation (a staged run's pretrained teacher, whose head is untrained)."""
    check_accelerator(cfg)  # a GPU the machine lacks is said before any teacher is built or trained
    names = teacher_names(cfg)
    weights = cfg.teacher.weights
    weights = [weights] if isinstance(weights, str) else list(weights or [])
    if weights and len(weights) != len(names):
        raise ConfigError(f"teacher.weights lists {len(weights)} file(s) for {len(names)} teacher arch(s)",
                          "give one weights file per name in teacher.arch")
    pretrained = bool(cfg.teacher.get("pretrained", False))
    kwargs_of = {name: with_data_tokenizer(name, arch_kwargs(cfg.teacher), datamodule, "teacher") for name in names}
    if not weights and not pretrained and cfg.teacher.get("recipe") is not None:  # said before any of them trains
        announce_training(cfg, datamodule, [(name, cfg.teacher.recipe, "teacher", kwargs_of[name]) for name in names],
                          say)
    teachers, infos, trained_now = [], [], False
    for i, name in enumerate(names):
        kwargs = kwargs_of[name]
        model = create(name, datamodule.num_classes, datamodule.input_shape, pretrained=pretrained and not weights,
                       **kwargs)
        if weights:
            source = str(Path(weights[i]).expanduser())
            load_weights(model, Path(source))
        elif pretrained:
            source = f"pretrained:{name}"  # the arch's own published weights (timm: from the HF hub)
        else:
            if cfg.teacher.get("recipe") is None:
                raise ConfigError(f"teacher {name} has no weights, no pretrained weights and no recipe",
                                  "give it teacher.weights, pretrained: true or a recipe to train it by")
            path, trained = trained_once(cfg, name, cfg.teacher.recipe, datamodule, say, role="teacher",
                                         kwargs=kwargs)
            source, trained_now = str(path), trained_now or trained
            load_weights(model, path)
        teachers.append(model.eval().requires_grad_(False))
        infos.append(ModelInfo(name=name, params=count_params(model), weights=source,
                               flops=count_flops(model, datamodule.input_shape)))
    # A lone recipe-trained teacher was evaluated on this test split when it was trained: reuse those metrics.
    lone_recipe_teacher = len(names) == 1 and not weights and not pretrained
    metrics = stored_metrics(Path(infos[0].weights)) if lone_recipe_teacher else None
    if metrics is None and not measure:
        metrics = {}
    elif metrics is None:
        metrics = evaluate(datamodule, teachers, "test", device=eval_device(cfg), role="teacher",
                           limit_batches=smoke_limit(cfg))
    for teacher in teachers:
        teacher.cpu()  # the method module moves them where training runs
    if metrics and not (lone_recipe_teacher and trained_now):  # a lone teacher trained now has said its metrics
        say(f"teacher{'s' if len(names) > 1 else ''} {' + '.join(names)}: {headline(datamodule, metrics)}")
    return teachers, infos, metrics
