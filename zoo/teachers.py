"""Teachers: loaded from weight files, or trained once by their own recipe and reused.

A teacher without weights is trained by the ``teacher.recipe`` block with the
supervised method it names (``recipe.method``: ``ce`` by default, ``detr_alone``
for detectors, which learn from their own set loss) and stored under
ZOO_HOME/teachers/<arch>-<hash>/, keyed by a hash of arch, arch kwargs, recipe and
dataset fingerprint: later runs, other arms and other seeds of the same task reuse it. A stored teacher whose file no
longer matches its recorded sha256 is retrained, never used.
"""

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import OmegaConf
from torch import nn

from zoo.archs import arch_kwargs, count_params, create
from zoo.evaluate import eval_device, headline, model_flops
from zoo.paths import student_inits_dir, teacher_weights_dir
from zoo.records import ModelInfo, atomic_write_text
from zoo.weights import load_weights, save_weights, sha256_file

log = logging.getLogger(__name__)


def teacher_names(cfg: Any) -> list[str]:
    arch = cfg.teacher.arch
    return [arch] if isinstance(arch, str) else list(arch)


def prepare_teachers(cfg: Any, datamodule, say=print) -> tuple[list[nn.Module], list[ModelInfo], dict[str, float]]:
    names = teacher_names(cfg)
    weights = cfg.teacher.weights
    weights = [weights] if isinstance(weights, str) else list(weights or [])
    if weights and len(weights) != len(names):
        raise ValueError(f"teacher.weights lists {len(weights)} file(s) for {len(names)} teacher arch(s)")
    teachers, infos = [], []
    said: list[str] = []

    def say_and_keep(text: str) -> None:
        said.append(text)
        say(text)

    pretrained = bool(cfg.teacher.get("pretrained", False))
    kwargs = arch_kwargs(cfg.teacher)
    for i, name in enumerate(names):
        model = create(name, datamodule.num_classes, datamodule.input_shape, pretrained=pretrained and not weights,
                       **kwargs)
        if weights:
            source = str(Path(weights[i]).expanduser())
            load_weights(model, Path(source))
        elif pretrained:
            source = f"pretrained:{name}"  # the arch's own published weights (timm: from the HF hub)
        else:
            source = str(trained_teacher_path(cfg, name, datamodule, say_and_keep))
            load_weights(model, Path(source))
        teachers.append(model.eval().requires_grad_(False))
        infos.append(ModelInfo(name=name, params=count_params(model), weights=source,
                               flops=model_flops(model, datamodule.input_shape)))
    # A lone recipe-trained teacher was evaluated on this test split when it was trained: reuse those metrics.
    metrics = _stored_metrics(Path(infos[0].weights)) if len(names) == 1 and not weights and not pretrained else None
    if metrics is None:
        metrics = datamodule.evaluate(teachers, "test", device=eval_device(cfg), role="teacher")
    for teacher in teachers:
        teacher.cpu()  # the method module moves them where training runs
    line = f"teacher{'s' if len(names) > 1 else ''} {' + '.join(names)}: {headline(datamodule, metrics)}"
    if line not in said:  # a lone teacher trained just now has said this already
        say(line)
    return teachers, infos, metrics


def _stored_metrics(weights: Path) -> dict[str, float] | None:
    """The test metrics that ``trained_once`` wrote next to stored weights (its key fixes data and split)."""
    try:
        metrics = json.loads((weights.parent / "meta.json").read_text()).get("metrics")
    except (OSError, json.JSONDecodeError):
        return None
    return {str(k): float(v) for k, v in metrics.items()} if metrics else None


def trained_teacher_path(cfg: Any, name: str, datamodule, say=print) -> Path:
    return trained_once(cfg, name, cfg.teacher.recipe, datamodule, say, role="teacher",
                        kwargs=arch_kwargs(cfg.teacher))


def trained_student_init(cfg: Any, datamodule, say=print) -> Path:
    """The student's starting weights from ``student.init_recipe``: CE-trained once, then reused by every arm.

    MEAL V2's finding is that soft labels need a good initialisation; every arm of a
    reproduce starts from the same file, so the comparison is of what comes after it.
    """
    return trained_once(cfg, cfg.student.arch, cfg.student.init_recipe, datamodule, say, role="student init",
                        kwargs=arch_kwargs(cfg.student))


def student_start_weights(cfg: Any, datamodule, say=print) -> str | None:
    """The file the student starts from: ``student.weights``, else ``student.init_recipe``'s stored weights
    (trained first if missing), else None (the arch's own initialisation, published or random)."""
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
                     pretrained=bool(cfg.student.pretrained), **arch_kwargs(cfg.student))
    if weights:
        load_weights(student, Path(weights))
    return student


def stored_weights_key(cfg: Any, name: str, recipe_cfg: Any, datamodule, role: str = "teacher",
                       kwargs: dict | None = None) -> dict:
    """What weights trained by a recipe depend on: arch, recipe and the data, less the settings that only shape
    what comes after them (distillation sampling), so that changing those reuses the stored file."""
    recipe = OmegaConf.to_container(recipe_cfg, resolve=True)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if not (data_cfg.get("augment") or {}).get("enabled", False):
        data_cfg.pop("augment", None)  # switched-off augmentation is the same data as none: stored weights stay valid
    if "teacher_runs" in data_cfg:  # a run mined from the teacher itself comes after it: it cannot change it
        data_cfg["teacher_runs"] = [run for run in data_cfg["teacher_runs"] if run != "teacher"]
        if not data_cfg["teacher_runs"]:  # and without runs the rank window picks nothing
            data_cfg.get("negatives", {}).pop("window", None)
    # A teacher's own training reads no teacher scores: how t+ is set in the distillation targets cannot change it.
    data_cfg.get("negatives", {}).pop("positive_score", None)
    # How several run files are fused matters only with two or more, and skip is the rule from before the switch
    # existed: either way the key stays as it was, so stored teachers stay valid.
    if data_cfg.get("teacher_missing") == "skip" or len(data_cfg.get("teacher_runs", [])) < 2:
        data_cfg.pop("teacher_missing", None)
    # No ensemble position in the key: training depends on arch, recipe and data only, so a teacher
    # of an ensemble is the same file as that arch alone (e.g. a single-teacher arm of the same task).
    key = {"arch": name, "recipe": recipe, "data": datamodule.fingerprint,
           "data_cfg": data_cfg}
    if role != "teacher":  # teachers' keys predate roles: leave them as they are so stored teachers stay valid
        key["role"] = role
    if kwargs:  # likewise only where there are any, so stored weights of archs without kwargs stay valid
        key["kwargs"] = kwargs
    return key


def trained_once(cfg: Any, name: str, recipe_cfg: Any, datamodule, say=print, role: str = "teacher",
                 kwargs: dict | None = None) -> Path:
    """Weights of ``name`` trained by ``recipe_cfg``, stored under ZOO_HOME keyed by everything they depend on."""
    from filelock import FileLock

    key = stored_weights_key(cfg, name, recipe_cfg, datamodule, role, kwargs)
    recipe = key["recipe"]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = (teacher_weights_dir() if role == "teacher" else student_inits_dir()) / f"{name}-{digest}"
    weights = folder / ("teacher.safetensors" if role == "teacher" else "weights.safetensors")
    meta_path = folder / "meta.json"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if weights.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("sha256") == sha256_file(weights):
                return weights
            log.warning("stored %s %s does not match its checksum: retraining it", role, weights)
        say(f"training {role} {name} ({recipe['epochs']} epochs, stored for reuse in {folder})")
        started = time.perf_counter()
        model = _train_by_recipe(cfg, name, recipe, datamodule, kwargs or {})
        save_weights(model, weights)
        metrics = datamodule.evaluate([model], "test", device=eval_device(cfg), role=role)
        meta = {"key": key, "sha256": sha256_file(weights), "metrics": metrics,
                "train_seconds": round(time.perf_counter() - started, 2)}
        atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True))
        say(f"{role} {name}: {headline(datamodule, metrics)}")
    return weights


def _train_by_recipe(cfg: Any, name: str, recipe: dict, datamodule, kwargs: dict) -> nn.Module:
    """``name`` trained alone by the recipe's teacher-free method (``method``: a name such as ``ce`` or
    ``detr_alone``, or a mapping ``{name: splade_bi, ...}`` with its settings), optionally with gradient clipping."""
    from zoo.registry import METHODS

    method = recipe.get("method") or "ce"
    method_cfg = OmegaConf.create({"name": method} if isinstance(method, str) else method)
    method_cls = METHODS.get(method_cfg.name)
    if method_cls.uses_teachers:
        from zoo.errors import ConfigError

        raise ConfigError(f"recipe method '{method_cfg.name}' needs a teacher",
                          "a recipe trains alone: ce, detr_alone or splade_bi")
    L.seed_everything(int(recipe["seed"]), verbose=False)
    model = create(name, datamodule.num_classes, datamodule.input_shape,
                   pretrained=bool(recipe.get("pretrained", False)), **kwargs)
    module = method_cls(model, [], method_cfg, OmegaConf.create(recipe["optim"]), datamodule.num_classes)
    trainer = L.Trainer(max_epochs=int(recipe["epochs"]), accelerator=cfg.trainer.accelerator, devices=1,
                        gradient_clip_val=recipe.get("gradient_clip_val"),
                        logger=False, enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=bool(cfg.trainer.enable_progress_bar),
                        use_distributed_sampler=False, limit_val_batches=0, num_sanity_val_steps=0,
                        limit_train_batches=recipe.get("limit_train_batches"))  # None = all (smoke tests cap it)
    run_shuffle_seed, datamodule.shuffle_seed = datamodule.shuffle_seed, int(recipe["seed"])
    try:  # the teacher's data order follows its recipe's seed, not the run's
        trainer.fit(module, datamodule=datamodule)
    finally:
        datamodule.shuffle_seed = run_shuffle_seed
    return model.cpu()

