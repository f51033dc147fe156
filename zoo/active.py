"""Active-distillation runs: rounds of choose, query the teacher, retrain (Robust Active Distillation and its
baselines; spec methods/robust_active_distillation.md). The cost that counts is the teacher's answers, not epochs.

A task with an ``active`` block trains this way (``zoo train task=rad_fashion_mnist``):

- **Sets.** From the task's training split, the labelled set L (``labelled`` examples, hard labels) and the pool U
  (``pool``; null = the rest), drawn by the run seed, so every arm of one seed starts from the same L and U; from
  its val split, Vd (``validation``), read only to estimate the teacher's mistakes. The test split is the task's.
- **Rounds.** Round 0 fits the student on L alone (``initial_epochs``). Each round r = 1..``rounds`` the current
  student scores the pool, the selector (``selector``, one of ``zoo.selectors``) picks ``budget`` points, the
  teacher labels those alone (q = softmax(z_T / ``temperature``)), they leave the pool for the distilled set D (the
  oracle reference keeps only the ones its teacher got right), and the student is refitted on L and D with
  ``active_kd`` for ``epochs``: warm from the previous round (``warm_start: true``, the cheaper reading; the spec
  leaves it open) or from its initial weights.
- **m.** The teacher's error rate on Vd, e, sets m, the number of mistakes RAD's game allows for: round(e n) with n
  the pool's current size (``mistakes: pool``, the spec's reading: m counts the population p lives on),
  round(e b) (``budget``); ``fixed_mistakes`` (an integer) replaces the estimate.
- **Folder.** ``rounds/<r>/`` holds ``queries.safetensors`` (the round's picks and the teacher's answers, written
  before the fit, so a resumed round never asks the teacher again), ``checkpoints/last.ckpt`` (a killed fit resumes
  at its last epoch) and, once the round is over, ``student.safetensors`` and ``done.json`` (its metrics, queries
  and the fraction of them the teacher got wrong, which only the true labels tell: a measurement, read by no
  selector but the oracle). A finished round is never redone.

One process: the choosing between fits is not distributed.
"""

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from zoo.atomic import atomic_write_text
from zoo.data.base import TensorDictDataset, ZooDataModule
from zoo.errors import CheckpointError, ConfigError, did_you_mean
from zoo.fitting import TrainResult, finish_run, fit_in_folder
from zoo.runs import prepare_run_dir, quiet_lightning, resume_hint
from zoo.weights import load_weights, save_weights, sha256_file

ACTIVE_KEYS = {"labelled", "pool", "validation", "rounds", "budget", "selector", "gain", "mistakes", "fixed_mistakes",
               "warm_start", "initial_epochs", "epochs", "temperature", "soft_weight"}
MISTAKES = ("pool", "budget")


@dataclass
class Sets:
    labelled: np.ndarray    # positions in the task's training split
    pool: np.ndarray        # positions in the task's training split, disjoint from labelled
    validation: np.ndarray  # positions in the task's val split


def check_active(cfg: DictConfig) -> dict[str, Any]:
    """The ``active`` block as a dict, checked before any data is read or teacher trained."""
    from zoo.registry import METHODS, SELECTORS
    from zoo.selectors.gains import GAINS

    active = OmegaConf.to_container(cfg.active, resolve=True)
    unknown = sorted(set(active) - ACTIVE_KEYS)
    if unknown:
        raise ConfigError(f"active: unknown key(s) {', '.join(unknown)}", f"valid keys: {sorted(ACTIVE_KEYS)}")
    METHODS.get(cfg.method.name).check_run_shape(True, cfg.method.name)
    SELECTORS.get(active["selector"])  # an unknown name fails here, with the valid ones
    if active["gain"] not in GAINS:
        raise ConfigError(f"unknown active.gain '{active['gain']}'", did_you_mean(active["gain"], GAINS, "gains"))
    if active["mistakes"] not in MISTAKES:
        raise ConfigError(f"active.mistakes={active['mistakes']!r}", f"give one of {', '.join(MISTAKES)}")
    fixed = active["fixed_mistakes"]
    if fixed is not None and (not isinstance(fixed, int) or fixed < 0):
        raise ConfigError(f"active.fixed_mistakes={fixed!r}", "give a non-negative integer, or null to estimate m")
    for key in ("labelled", "validation", "rounds", "budget"):
        if not isinstance(active[key], int) or active[key] < 1:
            raise ConfigError(f"active.{key}={active[key]!r}: an active run needs at least 1",
                              f"give active.{key} a positive integer")
    if int(cfg.trainer.get("devices", 1) or 1) > 1 or int(cfg.trainer.get("num_nodes", 1) or 1) > 1:
        raise ConfigError("an active run trains in one process", "set trainer.devices=1")
    return active


def draw_sets(active: dict[str, Any], datamodule, seed: int) -> Sets:
    """L and U from the training split and Vd from the val split, seeded by the run seed; sizes checked."""
    n_train, n_val = len(datamodule.splits["train"]), len(datamodule.splits["val"])
    labelled, rounds, budget = active["labelled"], active["rounds"], active["budget"]
    pool = n_train - labelled if active["pool"] is None else int(active["pool"])
    if labelled + pool > n_train:
        raise ConfigError(f"active.labelled + active.pool = {labelled + pool} exceed the {n_train} training examples",
                          "make the labelled set or the pool smaller")
    if budget * rounds > pool:
        raise ConfigError(f"active.budget x active.rounds = {budget * rounds} queries exceed the pool of {pool}",
                          "lower the budget or the rounds, or enlarge active.pool")
    if active["validation"] > n_val:
        raise ConfigError(f"active.validation={active['validation']} exceeds the {n_val} examples of the val split",
                          "make Vd smaller")
    order = np.random.default_rng([seed, 0]).permutation(n_train)
    validation = np.random.default_rng([seed, 1]).permutation(n_val)[: active["validation"]]
    return Sets(np.sort(order[:labelled]), np.sort(order[labelled:labelled + pool]), np.sort(validation))


def in_memory(split, name: str) -> TensorDictDataset:
    if not isinstance(split, TensorDictDataset):
        raise ConfigError(f"an active run reads its {name} split as tensors, and this data serves it another way",
                          "switch data.augment off")
    return split


class Teacher:
    """The teacher, asked about given inputs only."""

    def __init__(self, model, device: str, batch_size: int, temperature: float):
        self.model, self.device, self.batch_size, self.temperature = model.to(device).eval(), device, batch_size, \
            temperature

    @torch.no_grad()
    def probs(self, inputs: torch.Tensor) -> torch.Tensor:
        out = [torch.softmax(self.model(chunk.to(self.device)).float() / self.temperature, dim=1).cpu()
               for chunk in inputs.split(self.batch_size)]
        return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def student_probs(student, inputs: torch.Tensor, batch_size: int, device: str) -> torch.Tensor:
    was_training = student.training
    student.to(device).eval()
    out = torch.cat([torch.softmax(student(chunk.to(device)).float(), dim=1).cpu()
                     for chunk in inputs.split(batch_size)])
    student.train(was_training)
    return out


def mistakes_for(active: dict[str, Any], error_rate: float, pool_size: int) -> int:
    if active["fixed_mistakes"] is not None:
        m = int(active["fixed_mistakes"])
    else:
        m = round(error_rate * (pool_size if active["mistakes"] == "pool" else active["budget"]))
    if m >= pool_size:
        raise ConfigError(f"RAD's game allows for m={m} teacher mistakes in a pool of {pool_size}: nothing is "
                          "left to learn from", "check the teacher (its error on Vd) or set active.fixed_mistakes")
    return m


class RoundData(ZooDataModule):
    """The task's data module with L and D as its training split, for one round's fit."""

    def __init__(self, task_data, train_set):
        self.kind = task_data.kind  # declared before the base's check, as a subclass would
        super().__init__(task_data.cfg, task_data.shuffle_seed)
        self.name, self.num_classes, self.input_shape = task_data.name, task_data.num_classes, task_data.input_shape
        self.fingerprint = task_data.fingerprint
        self.splits = {"train": train_set, "val": task_data.splits["val"], "test": task_data.splits["test"]}


def round_train_set(train, labelled: np.ndarray, distilled: np.ndarray, soft: torch.Tensor, soft_weight: float):
    """L and D as one data set: D's true labels are hidden (-1), its soft labels and per-sample weights attached
    (``active_kd``'s docstring)."""
    idx = torch.as_tensor(np.concatenate([labelled, distilled]), dtype=torch.long)
    n_l, n_d = len(labelled), len(distilled)
    targets = train.targets[idx].clone()
    targets[n_l:] = -1
    is_distilled = torch.zeros(n_l + n_d, dtype=torch.bool)
    is_distilled[n_l:] = True
    weight = torch.full((n_l + n_d,), (n_l + n_d) / n_l)
    if n_d:
        weight[n_l:] = soft_weight * (n_l + n_d) / n_d
    all_soft = torch.zeros(n_l + n_d, soft.shape[1])
    all_soft[n_l:] = soft
    return TensorDictDataset(train.inputs[idx], targets, {"soft": all_soft, "distilled": is_distilled,
                                                          "weight": weight})


def checked_file(path: Path, expected: str) -> Path:
    if not path.is_file() or sha256_file(path) != expected:
        raise CheckpointError(f"{path} is missing or does not match its checksum in done.json",
                              f"nothing was changed; delete {path.parent} to redo that round")
    return path


def read_done(folder: Path) -> dict[str, Any]:
    try:
        summary = json.loads((folder / "done.json").read_text())
        checked_file(folder / "student.safetensors", summary["student_sha256"])
        if summary["round"]:
            checked_file(folder / "queries.safetensors", summary["queries_sha256"])
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{folder / 'done.json'} is unreadable ({err})",
                              f"delete {folder} to redo that round") from err
    return summary


def choose_and_query(student, selector, teacher: Teacher, train, pool: np.ndarray, budget: int, mistakes: int,
                     generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One round's queries: the student scores the pool, the selector picks, the teacher answers on the picks."""
    probs = student_probs(student, train.inputs[torch.as_tensor(pool)], teacher.batch_size, teacher.device)
    picked = torch.as_tensor(pool[selector.choose(probs, budget, mistakes, generator).numpy()])
    answers = teacher.probs(train.inputs[picked])
    return {"picked": picked, "soft": answers, "keep": selector.keep(answers, train.targets[picked]),
            "mistakes": torch.tensor(mistakes)}


def write_queries(queries: dict[str, torch.Tensor], path: Path) -> None:
    """Written whole or not at all (a temp file renamed): a kill mid-write must not leave half the answers."""
    from safetensors.torch import save_file

    partial = path.with_name(path.name + ".partial")
    save_file(queries, str(partial))
    os.replace(partial, path)


def read_queries(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        queries = load_file(path)
        missing = {"picked", "soft", "keep", "mistakes"} - set(queries)
    except Exception as err:  # safetensors raises its own error types for damaged headers and data
        raise CheckpointError(f"{path} is unreadable ({str(err).splitlines()[0]})",
                              "delete it to ask the teacher again for that round") from err
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(sorted(missing))}", "delete it to ask the teacher again")
    return queries


def train_active(cfg: DictConfig, say=print, callbacks: list | None = None) -> TrainResult:
    """Run a task with an ``active`` block end to end (see the module docstring)."""
    from zoo.evaluation import eval_device, evaluate, smoke_limit
    from zoo.methods.base import MethodContext
    from zoo.registry import DATASETS, METHODS, SELECTORS
    from zoo.students import create_student, student_start_weights
    from zoo.teachers import prepare_teachers

    quiet_lightning()
    started = time.perf_counter()
    active, seed = check_active(cfg), int(cfg.seed)
    method_cls, selector = METHODS.get(cfg.method.name), SELECTORS.get(active["selector"])(OmegaConf.create(active))
    datamodule = DATASETS.get(cfg.data.name)(cfg.data, shuffle_seed=seed)
    method_cls.check_kind(datamodule.kind, cfg.method.name)
    train, val = in_memory(datamodule.splits["train"], "train"), in_memory(datamodule.splits["val"], "val")
    sets = draw_sets(active, datamodule, seed)
    teachers, teacher_infos, teacher_metrics = prepare_teachers(cfg, datamodule, say)
    if len(teachers) != 1:
        raise ConfigError(f"an active run asks one teacher; this task has {len(teachers)}", "give one teacher.arch")
    device, batch = eval_device(cfg), int(cfg.data.eval_batch_size)
    teacher = Teacher(teachers[0], device, batch, float(active["temperature"]))
    val_probs = teacher.probs(val.inputs[torch.as_tensor(sets.validation)])
    error_rate = float((val_probs.argmax(1) != val.targets[torch.as_tensor(sets.validation)]).float().mean())
    say(f"teacher error on Vd ({len(sets.validation)} val examples): {error_rate:.4f}")
    mistakes_for(active, error_rate, len(sets.pool) - (active["rounds"] - 1) * active["budget"])  # the last round's
    student = create_student(cfg, datamodule, student_start_weights(cfg, datamodule, say))
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_seconds = time.perf_counter() - started
    run_dir, _ = prepare_run_dir(cfg)

    distilled, soft = np.zeros(0, dtype=np.int64), torch.zeros(0, datamodule.num_classes)
    pool, summaries, module, queried = sets.pool, [], None, 0
    for r in range(active["rounds"] + 1):
        folder = run_dir / "rounds" / str(r)
        folder.mkdir(parents=True, exist_ok=True)
        queries = None
        if r:
            queries_path = folder / "queries.safetensors"
            if queries_path.is_file():
                queries = read_queries(queries_path)
            else:
                m = mistakes_for(active, error_rate, len(pool))
                generator = torch.Generator().manual_seed(seed * 1000 + 500 + r)
                queries = choose_and_query(student, selector, teacher, train, pool, active["budget"], m, generator)
                write_queries(queries, queries_path)
            picked, keep = queries["picked"].numpy(), queries["keep"].numpy()
            pool = np.setdiff1d(pool, picked, assume_unique=True)
            distilled = np.concatenate([distilled, picked[keep]])
            soft = torch.cat([soft, queries["soft"][torch.as_tensor(keep)]])
            queried += len(picked)
        if (folder / "done.json").is_file():
            summary = read_done(folder)
            load_weights(student, folder / "student.safetensors")
            summaries.append(summary)
            say(f"round {r}/{active['rounds']}: done earlier, kept")
            continue
        if r and not active["warm_start"]:
            student.load_state_dict(initial)
        student.train()  # scoring the pool and evaluating left it in eval mode
        round_cfg = cfg.copy()
        OmegaConf.set_struct(round_cfg, False)
        round_cfg.trainer.max_epochs = int(active["epochs"] if r else active["initial_epochs"])
        L.seed_everything(seed * 1000 + r, verbose=False)  # a round depends on its start state alone
        if module is not None:
            module.close()
        module = method_cls(student, [], MethodContext.of(datamodule, cfg.method, cfg.optim))
        data = RoundData(datamodule, round_train_set(train, sets.labelled, distilled, soft,
                                                     float(active["soft_weight"])))
        say(f"round {r}/{active['rounds']}: {len(sets.labelled)} labelled + {len(distilled)} distilled, "
            f"{queried} teacher queries so far")
        round_started = time.perf_counter()
        trainer = fit_in_folder(round_cfg, folder, module, data, callbacks,
                                f"training interrupted in round {r}; its last finished epoch is saved in {folder}",
                                resume_hint(cfg, run_dir))
        limit = smoke_limit(cfg)
        metrics = {**evaluate(datamodule, [student], "val", device=device, limit_batches=limit),
                   **evaluate(datamodule, [student], "test", device=device, limit_batches=limit)}
        save_weights(student, folder / "student.safetensors")
        summary = round_summary(r, queries, train, queried, metrics, trainer, time.perf_counter() - round_started)
        summary.update(labelled=len(sets.labelled), distilled=len(distilled), pool_left=len(pool),
                       student_sha256=sha256_file(folder / "student.safetensors"))
        if queries is not None:
            summary["queries_sha256"] = sha256_file(folder / "queries.safetensors")
        else:
            summary["teacher_val_error"] = round(error_rate, 6)
        atomic_write_text(folder / "done.json", json.dumps(summary, indent=2, sort_keys=True))
        summaries.append(summary)
        say(f"round {r}: test acc {metrics.get('test/acc', float('nan')):.4f}")
    if module is None:  # every round was done: a run killed while it evaluated
        module = method_cls(student, [], MethodContext.of(datamodule, cfg.method, cfg.optim))
    save_weights(student, run_dir / "student.safetensors")
    # every sample the teacher labelled for the run, once: Vd and each round's picks (a resumed run reads its earlier
    # rounds' answers from their files and asks Vd again, so the process's own count would be wrong either way)
    queries_total = {"queries": queried, "validation": len(sets.validation), "samples": len(sets.validation) + queried}
    wall = {"teachers": teacher_seconds, "fit": sum(s["wall_s"] for s in summaries)}
    return finish_run(cfg, run_dir, student, datamodule, module, teacher_infos, teacher_metrics, queries_total, wall,
                      started, 1, say, rounds=summaries)


def round_summary(r: int, queries: dict | None, train, queried: int, metrics: dict[str, float], trainer,
                  seconds: float) -> dict[str, Any]:
    """What done.json and the record keep of a round. The selection itself (positions in the task's training split)
    stays in the round's queries.safetensors; the record names it by its sha256 and says which classes it took."""
    summary = {"round": r, "queries": 0, "queries_total": queried, "epochs": int(trainer.max_epochs),
               "steps": int(trainer.global_step), "wall_s": round(seconds, 3),
               "metrics": {k: round(v, 6) for k, v in metrics.items()}}
    if queries is not None:
        picked = queries["picked"]
        wrong = queries["soft"].argmax(1) != train.targets[picked]
        classes = torch.bincount(train.targets[picked], minlength=queries["soft"].shape[1])
        selection = hashlib.sha256(np.sort(picked.numpy()).astype("<i8").tobytes()).hexdigest()
        summary.update(queries=len(picked), kept=int(queries["keep"].sum()), mistakes_m=int(queries["mistakes"]),
                       teacher_wrong=round(float(wrong.float().mean()), 6), picked_sha256=selection,
                       picked_classes=classes.tolist())
    return summary
