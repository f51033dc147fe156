"""What the zoo's training loop costs over a plain PyTorch loop doing the same work.

Both arms train the same student on the same data for the same epochs, side by
side in one process, interleaved (alternating which goes first), median of repeats:

  zoo    method=ce as the zoo runs it: compose -> DATASETS -> create ->
         METHODS["ce"] (a DistillModule) -> Lightning Trainer.fit (max_epochs=E,
         no logger, checkpointing, progress bar, validation or sanity steps;
         with --as-train, zoo.fitting.trainer_arguments instead: CSV logger and a
         checkpoint every epoch, as `zoo train` writes them)
  plain  a hand-written loop: the same arch from zoo.archs.create and the same
         initial weights, the datamodule's train-split tensors indexed batch by
         batch, the same batch size, torch.optim.AdamW with the config's lr and
         weight decay, LambdaLR with zoo.methods.base.lr_lambda stepped per step,
         the same number of steps, in the same order as the zoo's seeded
         DistributedSampler (--order sampler) or a plain torch.randperm (--order randperm)

Both arms run in float32 (trainer.precision is set to 32-true for the zoo arm).

Reported: steps/s of each arm and zoo_time/plain_time (target <= 1.10), for the
whole fit and for the epochs alone (the zoo's fit also sets up the Trainer). With
--order sampler both arms do the same arithmetic, so their final weights should
agree to float rounding; the largest difference is printed as a check.
Extra key=value arguments are config overrides, e.g. data.train_subset=10000.
"""

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from _timing import EpochTimer, sync
from torch.utils.data import DistributedSampler

from zoo.archs import create
from zoo.config import compose
from zoo.fitting import trainer_arguments
from zoo.methods.base import MethodContext, lr_lambda
from zoo.records import hardware, package_versions
from zoo.registry import DATASETS, METHODS
from zoo.runs import quiet_lightning


def fresh_student(cfg, datamodule) -> torch.nn.Module:
    L.seed_everything(int(cfg.seed), verbose=False)
    return create(cfg.student.arch, datamodule.num_classes, datamodule.input_shape)


def run_zoo(cfg, datamodule, epochs: int, as_train: bool) -> tuple[dict, torch.nn.Module]:
    student = fresh_student(cfg, datamodule)
    module = METHODS.get("ce")(student, [], MethodContext.of(datamodule, cfg.method, cfg.optim))
    timer = EpochTimer()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-run-") as run_dir:
        if as_train:
            args = trainer_arguments(cfg, Path(run_dir))
            args.update(max_epochs=epochs, precision="32-true", limit_val_batches=0, num_sanity_val_steps=0,
                        enable_progress_bar=False)
            kept = [c for c in args["callbacks"] if "ProgressBar" not in type(c).__name__]
            args["callbacks"] = [*kept, timer]
        else:
            args = dict(accelerator=cfg.trainer.accelerator, devices=1, precision="32-true",
                        max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer])
        trainer = L.Trainer(**args)
        sync()
        begin = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        sync()
        total = time.perf_counter() - begin
    return {"fit_s": total, "epoch_s": timer.seconds, "steps": trainer.global_step}, student.cpu()


def run_plain(cfg, datamodule, epochs: int, order: str) -> tuple[dict, torch.nn.Module]:
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") else "cpu")
    dataset = datamodule.splits["train"]
    inputs, targets = dataset.inputs, dataset.targets
    batch_size = int(cfg.data.batch_size)
    per_epoch = math.ceil(len(dataset) / batch_size)
    student = fresh_student(cfg, datamodule)  # outside the timer, as in run_zoo
    sync()
    begin = time.perf_counter()
    student = student.to(device).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    factor = lr_lambda(cfg.optim, epochs * per_epoch, per_epoch)  # what configure_optimizers computes
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=int(cfg.seed))
    loop_s, steps = 0.0, 0
    for epoch in range(epochs):
        loop_begin = time.perf_counter()
        sampler.set_epoch(epoch)
        indices = torch.tensor(list(sampler)) if order == "sampler" else torch.randperm(len(dataset))
        for start in range(0, len(indices), batch_size):
            idx = indices[start:start + batch_size]
            x, y = inputs[idx].to(device, non_blocking=True), targets[idx].to(device, non_blocking=True)
            loss = F.cross_entropy(student(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            steps += 1
        sync()
        loop_s += time.perf_counter() - loop_begin
    return {"fit_s": time.perf_counter() - begin, "epoch_s": loop_s, "steps": steps}, student.cpu()


@torch.no_grad()
def max_weight_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((pa - pb).abs().max()) for pa, pb in zip(a.parameters(), b.parameters(), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (as for `zoo train`)")
    parser.add_argument("--task", default="kd_fashion_mnist", help="run as method=ce (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per arm per repeat (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of both arms (default: 3)")
    parser.add_argument("--order", choices=("sampler", "randperm"), default="sampler",
                        help="plain loop's sample order (default: %(default)s, the zoo's own order)")
    parser.add_argument("--as-train", action="store_true", help="zoo arm with zoo train's logger+checkpoints")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write the results as JSON to this path")
    args = parser.parse_args()

    quiet_lightning()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose(args.task, ["method=ce", "trainer.enable_progress_bar=false", *args.overrides])
    if cfg.optim.name != "adamw":
        parser.error(f"the plain loop uses AdamW; this task's optim.name is {cfg.optim.name}")
    datamodule = DATASETS.get(cfg.data.name)(cfg.data, shuffle_seed=int(cfg.seed))

    print("untimed warm-up: one epoch of each arm")
    run_zoo(cfg, datamodule, 1, args.as_train), run_plain(cfg, datamodule, 1, args.order)
    runs: dict[str, list[dict]] = {"zoo": [], "plain": []}
    differences = []
    for r in range(args.repeats):
        arms = ("zoo", "plain") if r % 2 == 0 else ("plain", "zoo")
        students = {}
        for arm in arms:
            if arm == "zoo":
                result, students[arm] = run_zoo(cfg, datamodule, args.epochs, args.as_train)
            else:
                result, students[arm] = run_plain(cfg, datamodule, args.epochs, args.order)
            runs[arm].append(result)
            print(f"  repeat {r + 1}/{args.repeats} {arm:<5} fit {result['fit_s']:.3f} s  "
                  f"epochs {result['epoch_s']:.3f} s  {result['steps']} steps")
        differences.append(max_weight_difference(students["zoo"], students["plain"]))
    if runs["zoo"][0]["steps"] != runs["plain"][0]["steps"]:
        print(f"WARNING: the arms took different numbers of steps: {runs['zoo'][0]['steps']} vs "
              f"{runs['plain'][0]['steps']}")

    steps = runs["plain"][0]["steps"]
    keys = ("fit_s", "epoch_s")
    median = {arm: {k: statistics.median(x[k] for x in runs[arm]) for k in keys} for arm in runs}
    ratio = {k: median["zoo"][k] / median["plain"][k] for k in keys}
    results = {"benchmark": "zoo_vs_plain", "task": args.task, "overrides": list(args.overrides),
               "epochs": args.epochs, "repeats": args.repeats, "order": args.order, "as_train": args.as_train,
               "student": cfg.student.arch, "train_samples": len(datamodule.splits["train"]),
               "batch_size": int(cfg.data.batch_size), "steps": steps, "median": median,
               "steps_per_s": {arm: {k: steps / v for k, v in m.items()} for arm, m in median.items()},
               "ratio_zoo/plain": ratio, "target": 1.10, "max_weight_difference": max(differences),
               "runs": runs,
               "torch_threads": torch.get_num_threads(), "load_avg_1m": os.getloadavg()[0],
               "hardware": hardware(), "versions": package_versions()}
    report(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


def report(res: dict) -> None:
    print(f"\n{res['task']} method=ce: student {res['student']}, {res['train_samples']} samples, "
          f"batch {res['batch_size']}, {res['epochs']} epoch(s) = {res['steps']} steps, "
          f"median of {res['repeats']}")
    print(f"{'arm':<16}{'fit s':>9}{'steps/s':>10}{'epochs s':>10}{'steps/s':>10}")
    for arm in ("zoo", "plain"):
        m, sps = res["median"][arm], res["steps_per_s"][arm]
        print(f"{arm:<16}{m['fit_s']:>9.3f}{sps['fit_s']:>10.1f}{m['epoch_s']:>10.3f}{sps['epoch_s']:>10.1f}")
    ratio = res["ratio_zoo/plain"]
    verdict = "OK" if ratio["fit_s"] <= res["target"] else "MISSED"
    print(f"{'zoo/plain time':<16}{ratio['fit_s']:>9.3f}{'':>10}{ratio['epoch_s']:>10.3f}"
          f"   target <= {res['target']:.2f}: {verdict}")
    print(f"largest final-weight difference zoo vs plain: {res['max_weight_difference']:.2e}"
          + ("" if res["order"] == "sampler" else " (different sample orders: not expected to match)"))
    hw = res["hardware"]
    gpus = ", " + ", ".join(hw["cuda_devices"]) if hw.get("cuda_devices") else ""
    print(f"torch threads {res['torch_threads']}, cpus {hw.get('cpu_count')}, "
          f"load avg {res['load_avg_1m']:.2f} (at the end), {hw.get('platform')}{gpus}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))


if __name__ == "__main__":
    main()
