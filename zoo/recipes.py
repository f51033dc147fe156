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
holds the key, the file's sha256 and the test metrics. A stored file that no longer matches its sha256 is
retrained, never used. A store that cannot be written (a shared, read-only one) serves the weights it holds without
its lock; one it lacks is a one-line error.
"""

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import OmegaConf
from torch import nn

from zoo.archs import create
from zoo.atomic import atomic_write_text
from zoo.errors import ConfigError, ZooError, environment_error, unwritable
from zoo.evaluation import eval_device, evaluate, headline
from zoo.fitting import stops_explained
from zoo.kinds import kind_of
from zoo.paths import student_inits_dir, teacher_weights_dir
from zoo.runs import check_accelerator
from zoo.weights import save_weights, sha256_file

log = logging.getLogger(__name__)

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


@dataclass
class StoredWeights:
    """Where the weights a recipe trains are stored, and what trains them (the recipe's own data, where it has one)."""
    name: str
    role: str
    folder: Path
    weights: Path
    key: dict
    cfg: Any
    datamodule: Any

    @property
    def recipe(self) -> dict:
        return self.key["recipe"]

    @property
    def stored(self) -> bool:
        """Both files there: what a look before training needs (``trained_once`` checks the checksum)."""
        return self.weights.is_file() and (self.folder / "meta.json").is_file()


def locate(cfg: Any, name: str, recipe_cfg: Any, datamodule, role: str = "teacher",
           kwargs: dict | None = None) -> StoredWeights:
    """Where ``name`` trained by ``recipe_cfg`` is stored (see the module docstring); nothing is read or trained."""
    if recipe_cfg.get("data"):
        cfg, datamodule = recipe_data(cfg, recipe_cfg.data, datamodule)
    key = stored_weights_key(cfg, name, recipe_cfg, datamodule, role, kwargs)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = (teacher_weights_dir() if role == "teacher" else student_inits_dir()) / f"{name}-{digest}"
    weights = folder / ("teacher.safetensors" if role == "teacher" else "weights.safetensors")
    return StoredWeights(name, role, folder, weights, key, cfg, datamodule)


def trained_once(cfg: Any, name: str, recipe_cfg: Any, datamodule, say=print, role: str = "teacher",
                 kwargs: dict | None = None) -> tuple[Path, bool]:
    """Weights of ``name`` trained by ``recipe_cfg``, stored under ZOO_HOME keyed by everything they depend on;
    returns their path and whether they were trained just now (and their metrics said)."""
    stored = locate(cfg, name, recipe_cfg, datamodule, role, kwargs)
    cfg, datamodule, recipe, weights = stored.cfg, stored.datamodule, stored.recipe, stored.weights  # the recipe's
    if _matches_checksum(stored, warn=False):  # no lock needed to read: a read-only shared store serves what it has
        return weights, False
    with _store_lock(stored):
        if _matches_checksum(stored, warn=True):  # another process may have stored it meanwhile
            return weights, False
        say(f"training {role} {name} ({recipe['epochs']} epochs, stored for reuse in {stored.folder})")
        started = time.perf_counter()
        model = train_by_recipe(cfg, name, recipe, datamodule, kwargs or {}, role)
        save_weights(model, weights)
        metrics = evaluate(datamodule, [model], "test", device=eval_device(cfg), role=role)
        meta = {"key": stored.key, "sha256": sha256_file(weights), "metrics": metrics,
                "train_seconds": round(time.perf_counter() - started, 2)}
        atomic_write_text(stored.folder / "meta.json", json.dumps(meta, indent=2, sort_keys=True))
        say(f"{role} {name}: {headline(datamodule, metrics)}")
    return weights, True


def _matches_checksum(stored: StoredWeights, warn: bool) -> bool:
    """Whether the stored weights are there and match the sha256 in their meta.json (a mismatch: retrained)."""
    if not stored.stored:
        return False
    meta = json.loads((stored.folder / "meta.json").read_text())
    if meta.get("sha256") == sha256_file(stored.weights):
        return True
    if warn:
        log.warning("stored %s %s does not match its checksum: retraining it", stored.role, stored.weights)
    return False


@contextlib.contextmanager
def _store_lock(stored: StoredWeights) -> Iterator[None]:
    """The lock of ``stored``'s folder, for training into it; a store that cannot be written is one line."""
    from filelock import FileLock

    lock = FileLock(str(stored.folder) + ".lock")
    try:
        stored.folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as err:
        cause = environment_error(err) if unwritable(err) else None
        if cause is None:
            raise
        raise ZooError(f"{stored.role} {stored.name} is not in the store {stored.folder.parent}, and cannot be "
                       f"trained into it: {cause}", f"set ZOO_HOME to a folder you can write, to train it there "
                       f"({stored.recipe['epochs']} epochs), or have it trained once into that store by someone who "
                       "can write it") from err
    try:
        yield
    finally:
        lock.release()


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


def stored_metrics(weights: Path) -> dict[str, float] | None:
    """The test metrics that ``trained_once`` wrote next to stored weights (its key fixes data and split)."""
    try:
        metrics = json.loads((weights.parent / "meta.json").read_text()).get("metrics")
    except (OSError, json.JSONDecodeError):
        return None
    return {str(k): float(v) for k, v in metrics.items()} if metrics else None


def recipe_trainer(cfg: Any, recipe: dict, callbacks: list | None = None) -> L.Trainer:
    """A Trainer with the run's ``trainer`` settings, less what the recipe decides (see the module docstring)."""
    check_accelerator(cfg)
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    args.update(max_epochs=int(recipe["epochs"]), devices=1, num_nodes=1, strategy="auto", fast_dev_run=False,
                limit_train_batches=recipe.get("limit_train_batches"),  # None = all (smoke tests cap it)
                gradient_clip_val=recipe.get("gradient_clip_val"), limit_val_batches=0, num_sanity_val_steps=0,
                logger=False, enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False,
                callbacks=list(callbacks or []))
    return L.Trainer(**args)


def train_by_recipe(cfg: Any, name: str, recipe: dict, datamodule, kwargs: dict, role: str = "teacher",
                    ) -> nn.Module:
    """``name`` trained alone by the recipe's teacher-free method (see the module docstring). Ctrl-C stores nothing
    and says so (``zoo.errors.Interrupted``)."""
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
        with stops_explained(f"training interrupted while {role} {name} trained by its recipe: nothing of it was "
                             f"stored (weights are stored only once their recipe finishes)",
                             f"run the same command again: it trains {role} {name} from its first epoch"):
            trainer.fit(module, datamodule=datamodule)
    finally:
        datamodule.shuffle_seed = run_shuffle_seed
    return model.cpu()
