"""Weights trained once by a recipe and stored for every later run, arm and seed: recipe teachers and the
students' starting weights (``student.init_recipe``).

A recipe block (``teacher.recipe``) names the epochs, seed, optimiser and, optionally, the data settings it trains on
where they differ from the run's (``data``: e.g. ``{train_subset: null}``, a teacher trained on the whole training
split for a student that sees a few thousand images; same data set and test split), the teacher-free method
that trains the model alone (``method``: a name such as ``ce`` or ``detr_alone``, or a mapping ``{name: splade_bi,
...}`` with its settings; by default the task kind's ``alone_method``), gradient clipping and a cap on the batches
per epoch (smoke tests). The model is trained by a Lightning Trainer with the run's own ``trainer`` settings
(accelerator, precision, gradient accumulation, determinism, progress bar), less what the recipe decides: its
length, one device (teachers are trained before a distributed launch), no validation, no logger, no checkpoints.

Weights are stored under ZOO_HOME/teachers/<arch>-<hash>/ (student inits under ZOO_HOME/student_inits/), keyed by a
hash of arch, arch kwargs, recipe, data and the trainer settings that change the result; ``meta.json`` beside them
holds the key, the file's sha256, the test metrics and ``meta_sha256``, a sha256 of the rest. Stored weights that no
longer match their sha256, or a meta.json that is missing, unreadable or does not match its own sha256, are
retrained with a one-line note, never used (and never a traceback).
"""

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import OmegaConf
from torch import nn

from zoo.archs import create
from zoo.atomic import atomic_write_text
from zoo.errors import ConfigError
from zoo.evaluation import eval_device, evaluate, headline
from zoo.kinds import kind_of
from zoo.paths import student_inits_dir, teacher_weights_dir
from zoo.weights import save_weights, sha256_file

# Trainer settings that change what a recipe trains, and the values every stored weights file was trained with
# before the recipe Trainer followed the run's settings: only a different value enters the key.
RESULT_SETTINGS = {"precision": "32-true", "accumulate_grad_batches": 1}


def stored_weights_key(cfg: Any, name: str, recipe_cfg: Any, datamodule, role: str = "teacher",
                       kwargs: dict | None = None) -> dict:
    """What weights trained by a recipe depend on: arch, recipe and the data, less the settings that only shape
    what comes after them (distillation sampling), so that changing those reuses the stored file."""
    recipe = OmegaConf.to_container(recipe_cfg, resolve=True)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    if not (data_cfg.get("augment") or {}).get("enabled", False):
        data_cfg.pop("augment", None)  # switched-off augmentation is the same data as none: stored weights stay valid
    # Length-grouped batches switched off are plain shuffled batches: stored weights from before the switch stay
    # valid, and a recipe that switches it off for its teacher reads the same as one that does not mention it.
    if not data_cfg.get("length_buckets", 1):
        data_cfg.pop("length_buckets")
    if not (recipe.get("data") or {}).get("length_buckets", 1):
        recipe["data"].pop("length_buckets")
    if data_cfg.get("train_slice", 0) is None:
        data_cfg.pop("train_slice")  # no slice is the whole split, as before the switch existed
    if data_cfg.get("labels") == "fine":
        data_cfg.pop("labels")  # the labels every stored weights file was trained on before the switch existed
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
    trainer = {k: cfg.trainer.get(k, default) for k, default in RESULT_SETTINGS.items()}
    changed = {k: v for k, v in trainer.items() if v != RESULT_SETTINGS[k]}
    if changed:
        key["trainer"] = changed
    return key


def trained_once(cfg: Any, name: str, recipe_cfg: Any, datamodule, say=print, role: str = "teacher",
                 kwargs: dict | None = None) -> tuple[Path, bool]:
    """Weights of ``name`` trained by ``recipe_cfg``, stored under ZOO_HOME keyed by everything they depend on;
    returns their path and whether they were trained just now (and their metrics said)."""
    from filelock import FileLock

    if recipe_cfg.get("data"):
        cfg, datamodule = recipe_data(cfg, recipe_cfg.data, datamodule)
    key = stored_weights_key(cfg, name, recipe_cfg, datamodule, role, kwargs)
    recipe = key["recipe"]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = (teacher_weights_dir() if role == "teacher" else student_inits_dir()) / f"{name}-{digest}"
    weights = folder / ("teacher.safetensors" if role == "teacher" else "weights.safetensors")
    meta_path = folder / "meta.json"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        problem = stored_problem(weights, meta_path)
        if problem is None:
            return weights, False
        if problem != "absent":  # damaged: say so, then retrain it rather than use it or stop with a traceback
            say(f"stored {role} {name} in {folder}: {problem}; retraining it")
        say(f"training {role} {name} ({recipe['epochs']} epochs, stored for reuse in {folder})")
        started = time.perf_counter()
        model = train_by_recipe(cfg, name, recipe, datamodule, kwargs or {})
        save_weights(model, weights)
        metrics = evaluate(datamodule, [model], "test", device=eval_device(cfg), role=role)
        meta = {"key": key, "sha256": sha256_file(weights), "metrics": metrics,
                "train_seconds": round(time.perf_counter() - started, 2)}
        atomic_write_text(meta_path, json.dumps(sealed(meta), indent=2, sort_keys=True))
        say(f"{role} {name}: {headline(datamodule, metrics)}")
    return weights, True


def recipe_data(cfg: Any, data_overrides: Any, datamodule) -> tuple[Any, Any]:
    """The run's config with the recipe's ``data`` settings merged into its data block, and that data module."""
    from zoo.registry import DATASETS

    data_cfg = OmegaConf.merge(cfg.data, data_overrides)  # a key the data block lacks fails here, by name
    recipe_cfg = cfg.copy()
    recipe_cfg.data = data_cfg
    recipe_dm = DATASETS.get(data_cfg.name)(data_cfg, shuffle_seed=datamodule.shuffle_seed)
    if recipe_dm.kind != datamodule.kind or recipe_dm.num_classes != datamodule.num_classes:
        raise ConfigError("a recipe's data settings must keep the task's kind and classes",
                          "change only which training examples the recipe sees (e.g. train_subset)")
    return recipe_cfg, recipe_dm


def sealed(meta: dict) -> dict:
    """``meta`` with ``meta_sha256``, the sha256 of the rest, so a meta.json whose metrics or weights hash were
    changed (or zeroed) after it was written is told from a good one."""
    return {**meta, "meta_sha256": _meta_digest(meta)}


def _meta_digest(meta: dict) -> str:
    rest = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def read_meta(meta_path: Path) -> dict | None:
    """A stored meta.json that reads and matches its own ``meta_sha256``, else None. One written before the zoo
    sealed them (no ``meta_sha256``) is accepted: its weights are still checked against its ``sha256``."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("meta_sha256", _meta_digest(meta)) != _meta_digest(meta):
        return None
    return meta


def stored_problem(weights: Path, meta_path: Path) -> str | None:
    """Why stored weights cannot be used ("absent" when never stored), or None when they match their meta.json."""
    if not weights.is_file() and not meta_path.is_file():
        return "absent"
    if not meta_path.is_file():
        return "its meta.json is missing"
    meta = read_meta(meta_path)
    if meta is None:
        return "its meta.json is unreadable or does not match its own sha256"
    if not weights.is_file() or meta.get("sha256") != sha256_file(weights):
        return f"{weights.name} is missing or does not match the sha256 in meta.json"
    return None


def stored_metrics(weights: Path) -> dict[str, float] | None:
    """The test metrics that ``trained_once`` wrote next to stored weights (its key fixes data and split)."""
    meta = read_meta(weights.parent / "meta.json")
    metrics = meta.get("metrics") if meta else None
    return {str(k): float(v) for k, v in metrics.items()} if metrics else None


def recipe_trainer(cfg: Any, recipe: dict) -> L.Trainer:
    """A Trainer with the run's ``trainer`` settings, less what the recipe decides (see the module docstring)."""
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    args.update(max_epochs=int(recipe["epochs"]), devices=1, num_nodes=1, strategy="auto", fast_dev_run=False,
                limit_train_batches=recipe.get("limit_train_batches"),  # None = all (smoke tests cap it)
                gradient_clip_val=recipe.get("gradient_clip_val"), limit_val_batches=0, num_sanity_val_steps=0,
                logger=False, enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False)
    return L.Trainer(**args)


def train_by_recipe(cfg: Any, name: str, recipe: dict, datamodule, kwargs: dict) -> nn.Module:
    """``name`` trained alone by the recipe's teacher-free method (see the module docstring)."""
    from zoo.methods.base import MethodContext
    from zoo.registry import METHODS

    method = recipe.get("method") or kind_of(datamodule).alone_method
    if method is None:
        raise ConfigError(f"the recipe for {name} names no method, and {datamodule.kind} tasks have no default",
                          "set teacher.recipe.method (e.g. splade_bi)")
    method_cfg = OmegaConf.create({"name": method} if isinstance(method, str) else method)
    method_cls = METHODS.get(method_cfg.name)
    if method_cls.uses_teachers:
        raise ConfigError(f"recipe method '{method_cfg.name}' needs a teacher",
                          "a recipe trains alone: ce, detr_alone or splade_bi")
    L.seed_everything(int(recipe["seed"]), verbose=False)
    model = create(name, datamodule.num_classes, datamodule.input_shape,
                   pretrained=bool(recipe.get("pretrained", False)), **kwargs)
    module = method_cls(model, [], MethodContext.of(datamodule, method_cfg, OmegaConf.create(recipe["optim"])))
    trainer = recipe_trainer(cfg, recipe)
    run_shuffle_seed, datamodule.shuffle_seed = datamodule.shuffle_seed, int(recipe["seed"])
    try:  # the teacher's data order follows its recipe's seed, not the run's
        trainer.fit(module, datamodule=datamodule)
    finally:
        datamodule.shuffle_seed = run_shuffle_seed
    return model.cpu()
