"""What Hybrid Distill's token dropping saves: one distillation step with tokens dropped (arm e) against the same
step with every token (arm d), side by side in one process.

The task's student and both teachers (default ``hybrid_fashion_mnist``: three vit.mini_p4) are built with random
weights (the step's cost does not depend on them, and no stored teacher is needed) and wrapped in two
``hybrid_distill`` modules that differ only in ``drop_ratio``: 0 (d) and the final ratio (e), reached from the first
step (``drop_warmup=0``), i.e. the cost at the end of the ramp. A third arm, ``e_kept``, also runs the MIM teacher
on the kept tokens only (``mim_input=kept``). A step is what training does: teachers' forward passes, the student's
forward with its losses, backward, AdamW step, on the task's training batches. The arms are timed in alternation
(the order rotates each round), ``--steps`` steps a round, and the median step time per arm over ``--rounds`` is
kept, so a load spike hits all of them. Target: e/d <= 0.7.

    python benchmarks/hybrid_token_drop.py [--task hybrid_fashion_mnist] [--drop 0.5] [--threads 1] [--out r.json]

Extra ``key=value`` arguments are config overrides, as for ``zoo train``.
"""

import argparse
import json
import os
import statistics
import time

import torch

from zoo.archs import create
from zoo.config import compose
from zoo.methods.base import MethodContext
from zoo.records import hardware, package_versions
from zoo.registry import DATASETS, METHODS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="hybrid_fashion_mnist")
    parser.add_argument("--drop", type=float, default=0.5, help="the final drop ratio of arm e")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=8, help="steps timed per arm and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    return parser.parse_args()


def build(cfg, datamodule, **method) -> tuple:
    """A hybrid_distill module of the task's models (random weights) with ``method`` settings, and its optimiser."""
    shape, classes = datamodule.input_shape, datamodule.num_classes
    torch.manual_seed(0)
    student = create(cfg.student.arch, classes, shape)
    teachers = [create(cfg.teacher.roles[role].arch, classes, shape) for role in ("mim", "discriminative")]
    method_cfg = cfg.method.copy()
    method_cfg.losses = dict(cfg.stages[0].losses)
    for key, value in method.items():
        method_cfg[key] = value
    module = METHODS.get("hybrid_distill")(student, teachers, MethodContext.of(datamodule, method_cfg, cfg.optim))
    groups = module.parameter_groups()
    return module, torch.optim.AdamW(groups, lr=float(cfg.optim.lr), weight_decay=float(cfg.optim.weight_decay))


def step_seconds(arm: tuple, batches: list) -> float:
    """Median seconds of one training step over ``batches``."""
    module, optimizer = arm
    module.train()
    times = []
    for batch in batches:
        started = time.perf_counter()
        losses = module.losses(batch)
        sum(module.weights.get(name, 1.0) * value for name, value in losses.items()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose(args.task, args.overrides)
    datamodule = DATASETS.get(cfg.data.name)(cfg.data, shuffle_seed=0)
    loader = iter(datamodule._loader("train", train=True))
    batches = [next(loader) for _ in range(args.steps)]
    arms = {"d": build(cfg, datamodule, drop_ratio=0.0),
            "e": build(cfg, datamodule, drop_ratio=args.drop, drop_warmup=0.0),
            "e_kept": build(cfg, datamodule, drop_ratio=args.drop, drop_warmup=0.0, mim_input="kept")}
    for arm in arms.values():  # one untimed step each: allocator and first-call costs
        step_seconds(arm, batches[:1])
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(step_seconds(arms[name], batches))
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {"task": args.task, "drop_ratio": args.drop, "batch_size": int(cfg.data.batch_size),
              "step_s": {name: round(value, 4) for name, value in median.items()},
              "ratio_e_over_d": round(median["e"] / median["d"], 3),
              "ratio_e_kept_over_d": round(median["e_kept"] / median["d"], 3), "target": 0.7,
              "threads": torch.get_num_threads(), "load_1min": round(os.getloadavg()[0], 2),
              "versions": package_versions(), "hardware": hardware(), "overrides": args.overrides}
    print(f"{args.task}: distillation step, batch {result['batch_size']}, median of {args.rounds} rounds x "
          f"{args.steps} steps, {result['threads']} thread(s), load {result['load_1min']}")
    print("| arm | drop ratio | MIM teacher sees | step s | / d |")
    print("|---|---|---|---|---|")
    for name, ratio, sees in (("d", 0.0, "all"), ("e", args.drop, "all"), ("e_kept", args.drop, "kept")):
        print(f"| {name} | {ratio} | {sees} | {median[name]:.4f} | {median[name] / median['d']:.3f} |")
    print(f"e/d = {result['ratio_e_over_d']} (target <= 0.7)")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
