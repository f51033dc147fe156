"""What the teacher-output cache buys: one epoch of ce, of kd from a warm cache, of kd with online teachers.

Measured, in one process and on the same data module, teachers and student arch:

  ce         the student alone (method=ce): the floor any distillation epoch is compared to
  kd_cached  method=kd reading the teachers' outputs from a warm on-disk cache
             (filled by one untimed kd epoch before the first repeat)
  kd_online  method=kd running the teachers every step (cache.enabled=false)

Each arm is built the way zoo/train.py builds a run (compose -> DATASETS ->
prepare_teachers -> create -> make_teacher_cache -> METHODS) and timed as the
wall time of ``trainer.fit`` of a Lightning Trainer with max_epochs=1 and no
logger, checkpointing, progress bar, validation or sanity steps. Every repeat
builds a fresh student, module, cache handle and Trainer and runs the three arms
in a rotated order; the table shows the median over repeats of the fit time and
of the epoch alone (on_train_epoch_start -> on_train_epoch_end).

Ratios: kd_cached/ce (target <= 1.15: a cached teacher should cost little more
than no teacher) and kd_online/kd_cached (what the cache saves).

Teachers and cached outputs live under ZOO_HOME. By default it is a fresh
temporary folder (deleted at the end), so the teacher is trained by its recipe
first; pass --zoo-home ~/.cache/zoo to reuse stored teachers and outputs, and
--teacher-epochs 1 for a quick run. Extra key=value arguments are config
overrides, e.g. data.train_subset=10000 or trainer=gpu.
"""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from _timing import EpochTimer, sync, zoo_home

from zoo.archs import create
from zoo.config import compose
from zoo.methods.base import MethodContext
from zoo.records import hardware, package_versions
from zoo.registry import DATASETS, METHODS
from zoo.runs import quiet_lightning
from zoo.teachers import prepare_teachers
from zoo.train import make_teacher_cache

ARMS = ("ce", "kd_cached", "kd_online")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (as for `zoo train`)")
    parser.add_argument("--task", default="kd_fashion_mnist", help="task name (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of all arms (default: 3)")
    parser.add_argument("--teacher-epochs", type=int, default=None,
                        help="override teacher.recipe.epochs (only matters when the teacher must be trained)")
    parser.add_argument("--zoo-home", default=None,
                        help="ZOO_HOME to use and keep (default: a fresh temporary folder, deleted after)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this path")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with zoo_home(args.zoo_home):
        results = run(args)
    report(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


def run(args: argparse.Namespace) -> dict:
    """Build the pieces once, fill the cache, then time the arms; ZOO_HOME is read only here (lazily)."""
    quiet_lightning()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = ["trainer.enable_progress_bar=false", *args.overrides]
    if args.teacher_epochs is not None:
        common.append(f"teacher.recipe.epochs={args.teacher_epochs}")
    cfgs = {"ce": compose(args.task, ["method=ce", *common]),
            "kd_cached": compose(args.task, ["method=kd", "cache.enabled=true", *common]),
            "kd_online": compose(args.task, ["method=kd", "cache.enabled=false", *common])}
    kd_cfg = cfgs["kd_cached"]
    datamodule = DATASETS.get(kd_cfg.data.name)(kd_cfg.data, shuffle_seed=int(kd_cfg.seed))
    started = time.perf_counter()
    teachers, infos, _ = prepare_teachers(kd_cfg, datamodule, say=lambda text: print(f"  {text}"))
    teacher_seconds = time.perf_counter() - started

    def fit_one_epoch(arm: str) -> dict:
        cfg = cfgs[arm]
        method_cls = METHODS.get(cfg.method.name)
        L.seed_everything(int(cfg.seed), verbose=False)
        student = create(cfg.student.arch, datamodule.num_classes, datamodule.input_shape)
        arm_teachers = teachers if method_cls.uses_teachers else []
        cache = make_teacher_cache(cfg, datamodule, arm_teachers, infos)
        module = method_cls(student, arm_teachers, MethodContext.of(datamodule, cfg.method, cfg.optim, cache))
        timer = EpochTimer()
        trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                            max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, use_distributed_sampler=False, limit_val_batches=0,
                            num_sanity_val_steps=0, callbacks=[timer])
        sync()
        begin = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        sync()
        fit_s = time.perf_counter() - begin
        return {"fit_s": fit_s, "epoch_s": timer.seconds, "steps": trainer.global_step,
                "teacher_forward_passes": module.teacher_calls["forward_passes"],
                "cache": dict(cache.stats) if cache is not None else None}

    print("untimed warm-up: one kd epoch that fills the teacher-output cache")
    warm = fit_one_epoch("kd_cached")
    print(f"  {warm['epoch_s']:.2f} s, cache {warm['cache']}")
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for r in range(args.repeats):
        order = ARMS[r % 3:] + ARMS[:r % 3]  # rotate, so no arm always runs first or last
        for arm in order:
            runs[arm].append(fit_one_epoch(arm))
            print(f"  repeat {r + 1}/{args.repeats} {arm:<9} fit {runs[arm][-1]['fit_s']:.3f} s  "
                  f"epoch {runs[arm][-1]['epoch_s']:.3f} s")
    cached = runs["kd_cached"]
    if any(c["cache"] is None or c["cache"]["misses"] or c["cache"]["corrupt"] or c["teacher_forward_passes"]
           for c in cached):
        print("WARNING: the kd_cached arm had no cache, missed it or ran the teacher: not a pure cache read")

    keys = ("fit_s", "epoch_s")
    median = {arm: {k: statistics.median(x[k] for x in runs[arm]) for k in keys} for arm in ARMS}
    pairs = (("kd_cached/ce", "kd_cached", "ce"), ("kd_online/kd_cached", "kd_online", "kd_cached"))
    ratios = {name: {k: median[a][k] / median[b][k] for k in keys} for name, a, b in pairs}
    return {"benchmark": "teacher_cache", "task": args.task, "overrides": common, "repeats": args.repeats,
            "zoo_home": os.environ["ZOO_HOME"] if args.zoo_home else "temporary",
            "train_samples": len(datamodule.splits["train"]), "batch_size": int(kd_cfg.data.batch_size),
            "steps_per_epoch": runs["ce"][0]["steps"], "student": kd_cfg.student.arch,
            "teachers": [i.name for i in infos], "teacher_prepare_s": round(teacher_seconds, 2),
            "median": median, "ratios": ratios, "targets": {"kd_cached/ce": 1.15}, "runs": runs,
            "torch_threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0],
            "hardware": hardware(), "versions": package_versions()}




def report(results: dict) -> None:
    print(f"\n{results['task']}: student {results['student']}, teachers {results['teachers']}, "
          f"{results['train_samples']} samples, batch {results['batch_size']}, "
          f"{results['steps_per_epoch']} steps/epoch, median of {results['repeats']}")
    print(f"{'arm':<22}{'fit s':>10}{'epoch s':>10}")
    for arm in ARMS:
        print(f"{arm:<22}{results['median'][arm]['fit_s']:>10.3f}{results['median'][arm]['epoch_s']:>10.3f}")
    for name, ratio in results["ratios"].items():
        target = results["targets"].get(name)
        verdict = "" if target is None else f"   target <= {target:.2f}: "
        verdict += "" if target is None else ("OK" if ratio["fit_s"] <= target else "MISSED")
        print(f"{name:<22}{ratio['fit_s']:>10.3f}{ratio['epoch_s']:>10.3f}{verdict}")
    hw, versions = results["hardware"], results["versions"]
    print(f"torch threads {results['torch_threads']}, cpus {hw.get('cpu_count')}, "
          f"load avg {results['load_avg_1m']:.2f} (at the end), {hw.get('platform')}"
          f"{', ' + ', '.join(hw['cuda_devices']) if hw.get('cuda_devices') else ''}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))


if __name__ == "__main__":
    main()
