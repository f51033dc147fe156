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
hash of arch, arch kwargs (a path inside ZOO_HOME, such as a generated data set's tokenizer, counted from ZOO_HOME,
so that the key does not depend on where that is; weights stored under the earlier absolute key are still found),
recipe, data and the trainer settings that change the result; ``meta.json`` beside them
holds the key, the file's sha256, the test metrics and ``meta_sha256``, a sha256 of the rest. Stored weights that no
longer match their sha256, or a meta.json that is missing, unreadable or does not match its own sha256, are
retrained with a one-line note, never used (and never a traceback). A store that cannot be written (a shared,
read-only one) serves the weights it holds without its lock; one it lacks is a one-line error.

A recipe's training says how long it is as it starts, and a few seconds in about how long it will take (``TimeLeft``,
an estimate); a smoke run (``trainer.fast_dev_run``) says before any of it trains what must train in full first
(``announce_training``). ``smoke: true`` in a recipe trains a smoke-sized model instead (one epoch of
``SMOKE_BATCHES`` batches): it has a key of its own, so no real run ever finds it, and only a ``trainer.fast_dev_run``
run may ask for it.
"""

import contextlib
import hashlib
import json
import math
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
from zoo.evaluation import eval_device, evaluate, headline, smoke_limit
from zoo.fitting import stops_explained
from zoo.kinds import kind_of
from zoo.paths import student_inits_dir, teacher_weights_dir, zoo_home
from zoo.runs import check_accelerator
from zoo.weights import save_weights, sha256_file

SMOKE_BATCHES = 2  # what a smoke-sized recipe (smoke: true) trains on: one epoch of this many batches
RECIPE_KEYS = {"teacher": "teacher.recipe", "student init": "student.init_recipe"}  # where a role's recipe is set

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
    for key, default in (("train_judgements", "all"), ("passage_words", 0)):  # switches' defaults: the data as
        if data_cfg.get(key, default) == default:                               # it was before they existed
            data_cfg.pop(key, None)
    if data_cfg.get("labels") == "fine":
        data_cfg.pop("labels")  # the labels every stored weights file was trained on before the switch existed
    if "teacher_runs" in data_cfg:  # a run mined from the teacher itself comes after it: it cannot change it
        data_cfg["teacher_runs"] = [run for run in data_cfg["teacher_runs"] if run != "teacher"]
        if not data_cfg["teacher_runs"]:  # and without runs the rank window picks nothing
            data_cfg.get("negatives", {}).pop("window", None)
    # A teacher's own training reads no teacher scores: how t+ is set in the distillation targets cannot change it.
    data_cfg.get("negatives", {}).pop("positive_score", None)
    # How several run files are fused matters only with two or more. skip was the default until floor replaced it
    # and stays out of the key, so teachers stored under it are still found when skip is asked for; floor with two
    # or more runs enters the key, so a teacher trained on skip-fused runs is never taken for a floor-fused one.
    if data_cfg.get("teacher_missing") == "skip" or len(data_cfg.get("teacher_runs", [])) < 2:
        data_cfg.pop("teacher_missing", None)
    # No ensemble position in the key: training depends on arch, recipe and data only, so a teacher
    # of an ensemble is the same file as that arch alone (e.g. a single-teacher arm of the same task).
    key = {"arch": name, "recipe": recipe, "data": datamodule.fingerprint,
           "data_cfg": data_cfg}
    if role != "teacher":  # teachers' keys predate roles: leave them as they are so stored teachers stay valid
        key["role"] = role
    if kwargs:  # likewise only where there are any, so stored weights of archs without kwargs stay valid
        key["kwargs"] = portable(kwargs)
    trainer = {k: cfg.trainer.get(k, default) for k, default in RESULT_SETTINGS.items()}
    changed = {k: v for k, v in trainer.items() if v != RESULT_SETTINGS[k]}
    if changed:
        key["trainer"] = changed
    return key


def portable(kwargs: dict) -> dict:
    """``kwargs`` with each path inside ZOO_HOME written from ``$ZOO_HOME`` (the tokenizer a generated data set keeps
    there, named by its generator settings): the key then does not depend on where ZOO_HOME is, so that another home
    sharing the store (a test's, with ``ZOO_TEST_STORES``) finds the weights."""
    home = zoo_home().resolve()
    out = {}
    for name, value in kwargs.items():
        path = Path(value) if isinstance(value, str) and Path(value).is_absolute() else None
        if path is not None and path.resolve().is_relative_to(home):
            value = "$ZOO_HOME/" + path.resolve().relative_to(home).as_posix()
        out[name] = value
    return out


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

    def length(self) -> str:
        """How much training the recipe is, in words: epochs, batches, examples."""
        if self.recipe.get("smoke"):
            return f"smoke-sized: 1 epoch of {SMOKE_BATCHES} batches"
        epochs, examples = int(self.recipe["epochs"]), len(self.datamodule.splits.get("train", ()))
        length = f"{epochs} epoch{'s' if epochs != 1 else ''}"
        if not examples:
            return length
        batches = math.ceil(examples / int(self.cfg.data.batch_size))
        return f"{length} x {batches} batches = {epochs * batches:,} steps, on {examples:,} examples"


def locate(cfg: Any, name: str, recipe_cfg: Any, datamodule, role: str = "teacher",
           kwargs: dict | None = None) -> StoredWeights:
    """Where ``name`` trained by ``recipe_cfg`` is stored (see the module docstring); nothing is read or trained."""
    if recipe_cfg.get("data"):
        cfg, datamodule = recipe_data(cfg, recipe_cfg.data, datamodule)
    key = stored_weights_key(cfg, name, recipe_cfg, datamodule, role, kwargs)
    located = stored_at(name, role, key, cfg, datamodule)
    if kwargs and key["kwargs"] != kwargs and not located.stored:  # stored while keys held ZOO_HOME's own paths
        earlier = stored_at(name, role, {**key, "kwargs": kwargs}, cfg, datamodule)
        return earlier if earlier.stored else located
    return located


def stored_at(name: str, role: str, key: dict, cfg: Any, datamodule) -> StoredWeights:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = (teacher_weights_dir() if role == "teacher" else student_inits_dir()) / f"{name}-{digest}"
    weights = folder / ("teacher.safetensors" if role == "teacher" else "weights.safetensors")
    return StoredWeights(name, role, folder, weights, key, cfg, datamodule)


def announce_training(cfg: Any, datamodule, wanted: list[tuple[str, Any, str, dict]], say=print) -> None:
    """In a smoke run (``trainer.fast_dev_run``), say before any of ``wanted`` ((name, recipe, role, kwargs), as
    ``trained_once`` takes them) trains which are not stored and so train first by their full recipes (fast_dev_run
    does not shorten them), how long those are, and how to get smoke-sized ones instead. A real run says each as it
    starts (``trained_once``)."""
    if not smoke_limit(cfg):
        return
    located = [locate(cfg, name, recipe, datamodule, role, kwargs) for name, recipe, role, kwargs in wanted]
    full = [p for p in located if not p.stored and not p.recipe.get("smoke")]
    if not full:
        return
    switches = " ".join(dict.fromkeys(f"{RECIPE_KEYS.get(p.role, p.role + ' recipe')}.smoke=true" for p in full))
    say("trainer.fast_dev_run, but first the full recipe of what is not stored yet (fast_dev_run does not shorten a "
        "recipe): " + "; ".join(f"{p.role} {p.name} ({p.length()})" for p in full)
        + f". How long is said a few seconds in (an estimate). For smoke-sized ones instead, stored apart and used by "
        f"fast_dev_run runs only: {switches}")


def trained_once(cfg: Any, name: str, recipe_cfg: Any, datamodule, say=print, role: str = "teacher",
                 kwargs: dict | None = None) -> tuple[Path, bool]:
    """Weights of ``name`` trained by ``recipe_cfg``, stored under ZOO_HOME keyed by everything they depend on;
    returns their path and whether they were trained just now (and their metrics said)."""
    check_accelerator(cfg)  # before anything is said or trained
    stored = locate(cfg, name, recipe_cfg, datamodule, role, kwargs)
    cfg, datamodule, recipe, weights = stored.cfg, stored.datamodule, stored.recipe, stored.weights  # the recipe's
    if recipe.get("smoke") and not smoke_limit(cfg):
        where = RECIPE_KEYS.get(role, f"the {role} recipe's")
        raise ConfigError(f"{where}.smoke=true trains a smoke-sized {role}: only a trainer.fast_dev_run run may use "
                          "one", f"drop {where}.smoke for a real run, or add trainer.fast_dev_run=true")
    if usable(stored):  # no lock needed to read: a read-only shared store serves what it has
        return weights, False
    with _store_lock(stored):
        if usable(stored, say):  # another process may have stored it meanwhile; a damaged one is said
            return weights, False
        say(f"training {role} {name} ({stored.length()}; stored for reuse in {stored.folder})")
        started = time.perf_counter()
        model = train_by_recipe(cfg, name, recipe, datamodule, kwargs or {}, say, role)
        save_weights(model, weights)
        limit = SMOKE_BATCHES if recipe.get("smoke") else None
        metrics = evaluate(datamodule, [model], "test", device=eval_device(cfg), role=role, limit_batches=limit)
        meta = {"key": stored.key, "sha256": sha256_file(weights), "metrics": metrics,
                "train_seconds": round(time.perf_counter() - started, 2), **({"smoke": True} if limit else {})}
        atomic_write_text(stored.folder / "meta.json", json.dumps(sealed(meta), indent=2, sort_keys=True))
        say(f"{role} {name}: {headline(datamodule, metrics)}")
    return weights, True


def usable(stored: StoredWeights, say=None) -> bool:
    """Whether the stored weights match their sealed meta.json (``stored_problem``); with ``say``, why damaged ones
    are about to be retrained."""
    problem = stored_problem(stored.weights, stored.folder / "meta.json")
    if problem is not None and problem != "absent" and say is not None:
        say(f"stored {stored.role} {stored.name} in {stored.folder}: {problem}; retraining it")
    return problem is None


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
                       f"({stored.length()}), or have it trained once into that store by someone who can write "
                       "it") from err
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


def recipe_trainer(cfg: Any, recipe: dict, callbacks: list | None = None) -> L.Trainer:
    """A Trainer with the run's ``trainer`` settings, less what the recipe decides (see the module docstring)."""
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    smoke = bool(recipe.get("smoke"))
    args.update(max_epochs=1 if smoke else int(recipe["epochs"]), devices=1, num_nodes=1, strategy="auto",
                fast_dev_run=False,
                limit_train_batches=SMOKE_BATCHES if smoke else recipe.get("limit_train_batches"),  # None = all
                gradient_clip_val=recipe.get("gradient_clip_val"), limit_val_batches=0, num_sanity_val_steps=0,
                logger=False, enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False,
                callbacks=list(callbacks or []))
    return L.Trainer(**args)


class TimeLeft(L.Callback):
    """Says once, ``after`` seconds into a recipe's training, about how long the rest will take: an estimate from
    the steps so far, so that a long recipe is known as such while it can still be stopped (Ctrl-C stores nothing)."""

    def __init__(self, what: str, say, after: float = 5.0):
        self.what, self.say, self.after = what, say, after
        self.started: float | None = None

    def on_train_start(self, trainer, module) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.started is None or trainer.global_step == 0:
            return
        elapsed = time.perf_counter() - self.started
        if elapsed < self.after:
            return
        left = elapsed / trainer.global_step * max(trainer.estimated_stepping_batches - trainer.global_step, 0)
        self.say(f"{self.what}: about {_duration(left)} to go (an estimate from its first {trainer.global_step} "
                 f"of {trainer.estimated_stepping_batches:,} steps)")
        self.started = None  # said once


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def train_by_recipe(cfg: Any, name: str, recipe: dict, datamodule, kwargs: dict, say=print,
                    role: str = "teacher") -> nn.Module:
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
    trainer = recipe_trainer(cfg, recipe, [TimeLeft(f"{role} {name}", say)])
    run_shuffle_seed, datamodule.shuffle_seed = datamodule.shuffle_seed, int(recipe["seed"])
    try:  # the teacher's data order follows its recipe's seed, not the run's
        with stops_explained(f"training interrupted while {role} {name} trained by its recipe: nothing of it was "
                             f"stored (weights are stored only once their recipe finishes)",
                             f"run the same command again: it trains {role} {name} from its first epoch"):
            trainer.fit(module, datamodule=datamodule)
    finally:
        datamodule.shuffle_seed = run_shuffle_seed
    return model.cpu()
