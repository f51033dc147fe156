"""What the region soft-label store buys: one epoch of random-crop training three ways, side by side.

  ce        the student alone on the seeded random crops (method=ce): the floor
  store     method=meal_v2 reading each crop's ensemble soft label from the store
            (soft_labels.enabled=true; the store is generated once, untimed, before the first repeat)
  online    method=meal_v2 running every teacher on every crop, every step

All three arms train on the same crops (data.augment.enabled=true, same crop seed),
with the same data order, student arch and optimiser. Each arm is built the way
zoo/train.py builds a run and timed as the wall time of ``trainer.fit`` with
max_epochs=1 and no logger, checkpointing, progress bar or validation; every
repeat builds a fresh student, module and Trainer and runs the arms in a rotated
order; the table shows medians over repeats.

Ratios: online/store (target >= 3: what the store saves) and store/ce (target
<= 1.2: a stored teacher should cost little more than none). The one-time cost,
generating the store's first epoch, is reported beside them.

By default the teachers are the task's archs with random weights written to
temporary files: the time of a forward pass does not depend on the weights'
values, and this keeps the benchmark to minutes. --trained-teachers trains them
by the task's recipe instead (stored under ZOO_HOME).
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from _timing import EpochTimer, sync

from zoo.archs import create
from zoo.config import compose
from zoo.methods.base import MethodContext
from zoo.records import hardware, package_versions
from zoo.registry import DATASETS, METHODS
from zoo.runs import quiet_lightning
from zoo.soft_label_store import prepare_store
from zoo.teachers import prepare_teachers, teacher_names
from zoo.weights import save_weights

ARMS = ("ce", "store", "online")
TARGETS = {"online/store": (">=", 3.0), "store/ce": ("<=", 1.2)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (as for `zoo train`)")
    parser.add_argument("--task", default="mealv2_fashion_mnist", help="task name (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of all arms (default: 3)")
    parser.add_argument("--trained-teachers", action="store_true", help="train the teachers by the task's recipe")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this path")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    quiet_lightning()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as scratch:
        if "ZOO_HOME" not in os.environ or not args.trained_teachers:
            os.environ["ZOO_HOME"] = scratch  # a fresh store (and teachers) every time, deleted after
        results = run(args, Path(scratch))
    report(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


def run(args: argparse.Namespace, scratch: Path) -> dict:
    common = ["trainer.enable_progress_bar=false", "data.augment.enabled=true", "student.init_recipe=null",
              "trainer.max_epochs=1", *args.overrides]
    probe = compose(args.task, common)
    plain = DATASETS.get(probe.data.name)(probe.data, shuffle_seed=int(probe.seed))
    stored = DATASETS.get(probe.data.name)(probe.data, shuffle_seed=int(probe.seed))
    if not args.trained_teachers:
        files = []
        for name in teacher_names(probe):
            files.append(scratch / f"{name}.safetensors")
            save_weights(create(name, plain.num_classes, plain.input_shape), files[-1])
        common.append(f"teacher.weights=[{','.join(str(f) for f in files)}]")
    cfgs = {"ce": compose(args.task, ["method=ce", *common]),
            "store": compose(args.task, ["method=meal_v2", "soft_labels.enabled=true", *common]),
            "online": compose(args.task, ["method=meal_v2", "soft_labels.enabled=false", *common])}
    teachers, infos, _ = prepare_teachers(cfgs["store"], plain, say=lambda text: print(f"  {text}"))

    print("untimed: generating the store's epoch 0 (the one-time cost)")
    begin = time.perf_counter()
    store = prepare_store(cfgs["store"], stored, teachers, [i.name for i in infos], say=lambda text: print(f"  {text}"))
    generate_s = time.perf_counter() - begin
    print(f"  {generate_s:.2f} s")

    def fit_one_epoch(arm: str) -> dict:
        cfg = cfgs[arm]
        method_cls = METHODS.get(cfg.method.name)
        L.seed_everything(int(cfg.seed), verbose=False)
        student = create(cfg.student.arch, plain.num_classes, plain.input_shape)
        arm_teachers = teachers if method_cls.uses_teachers else []
        module = method_cls(student, arm_teachers, MethodContext.of(plain, cfg.method, cfg.optim))
        timer = EpochTimer()
        trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                            max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, use_distributed_sampler=False, limit_val_batches=0,
                            num_sanity_val_steps=0, callbacks=[timer])
        sync()
        begin = time.perf_counter()
        trainer.fit(module, datamodule=stored if arm == "store" else plain)
        sync()
        return {"fit_s": time.perf_counter() - begin, "epoch_s": timer.seconds, "steps": trainer.global_step,
                "teacher_forward_passes": module.teacher_calls["forward_passes"]}

    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for r in range(args.repeats):
        for arm in ARMS[r % 3:] + ARMS[:r % 3]:  # rotated, so no arm always runs first or last
            runs[arm].append(fit_one_epoch(arm))
            print(f"  repeat {r + 1}/{args.repeats} {arm:<7} fit {runs[arm][-1]['fit_s']:.3f} s  "
                  f"epoch {runs[arm][-1]['epoch_s']:.3f} s")
    if any(x["teacher_forward_passes"] for x in runs["store"]):
        print("WARNING: the store arm ran a teacher: not a pure store read")

    keys = ("fit_s", "epoch_s")
    median = {arm: {k: statistics.median(x[k] for x in runs[arm]) for k in keys} for arm in ARMS}
    ratios = {"online/store": {k: median["online"][k] / median["store"][k] for k in keys},
              "store/ce": {k: median["store"][k] / median["ce"][k] for k in keys}}
    return {"benchmark": "soft_label_store", "task": args.task, "overrides": common, "repeats": args.repeats,
            "train_samples": len(plain.splits["train"]), "batch_size": int(probe.data.batch_size),
            "steps_per_epoch": runs["ce"][0]["steps"], "student": probe.student.arch,
            "teachers": [i.name for i in infos], "trained_teachers": args.trained_teachers,
            "top_k": int(probe.soft_labels.top_k), "store_generate_epoch_s": generate_s,
            "store_folder": str(store.folder), "median": median, "ratios": ratios,
            "targets": {k: list(v) for k, v in TARGETS.items()}, "runs": runs,
            "torch_threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0],
            "hardware": hardware(), "versions": package_versions()}


def report(results: dict) -> None:
    print(f"\n{results['task']}: student {results['student']}, teachers {results['teachers']}, "
          f"{results['train_samples']} random crops/epoch, batch {results['batch_size']}, "
          f"{results['steps_per_epoch']} steps/epoch, top-{results['top_k']} labels, median of {results['repeats']}")
    print(f"{'arm':<16}{'fit s':>10}{'epoch s':>10}")
    for arm in ARMS:
        print(f"{arm:<16}{results['median'][arm]['fit_s']:>10.3f}{results['median'][arm]['epoch_s']:>10.3f}")
    for name, ratio in results["ratios"].items():
        sign, target = TARGETS[name]
        met = ratio["fit_s"] >= target if sign == ">=" else ratio["fit_s"] <= target
        print(f"{name:<16}{ratio['fit_s']:>10.3f}{ratio['epoch_s']:>10.3f}   target {sign} {target}: "
              f"{'OK' if met else 'MISSED'}")
    print(f"one-time store generation: {results['store_generate_epoch_s']:.2f} s for one epoch of labels")
    hw = results["hardware"]
    print(f"torch threads {results['torch_threads']}, cpus {hw.get('cpu_count')}, "
          f"load avg {results['load_avg_1m']:.2f} (at the end), {hw.get('platform')}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))


if __name__ == "__main__":
    main()
