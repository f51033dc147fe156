"""LLaVA-MoD's preference stage on the mini task, tried on validation: which learning rate, β and loss (DPO
``sigmoid``, the paper's; ``kto_pair``, the released script's) lower the hallucination rate of the upcycled student
without costing it present-object accuracy?

Arm (d) of ``llava_mod_scene_vqa`` (``stages=llava_mod``) is trained once for the seed; its stages before the
preference stage are then copied into one run folder per setting and only the preference stage is trained there
(a staged run keeps a finished stage and never redoes it; every stage is seeded by (run seed, stage number), so a
full rerun would give the same earlier stages). A control setting trains the preference stage at learning rate
1e-9: the student as it enters that stage, the reference for "costs no accuracy".

The rule, fixed before the trial: among the settings whose val/acc_present is at most ``--present-tolerance`` below
the control's, the lowest val/hallucination wins; if none is within, the task's setting stays. Only val/ metrics
choose; the test metrics of each setting are kept in ``--out`` (``test``), e.g. the control's over seeds: the student
as it enters the stage, against which arm (d) is measured.

    python benchmarks/llava_mod_preference_trial.py --root /tmp/trial [--seed 0] [--lrs 0.0001,0.0003] \
        [--betas 0.1,0.5] [--losses sigmoid,kto_pair] [--out trial.json]

ZOO_HOME's stored teacher and tower are used (or trained once, about 18 min on one core); each setting then costs
about a minute on one core. Finished run folders under ``--root`` are read, not run again.
"""

import argparse
import json
import shutil
from pathlib import Path

from zoo.cli import main as zoo
from zoo.config import compose

TASK = "llava_mod_scene_vqa"
CONTROL_LR = "1e-9"
SHOWN = ("acc", "acc_present", "hallucination", "pope_f1", "pope_yes_ratio")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="run root of the trial's folders (kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lrs", default="0.00003,0.0001,0.0003,0.001,0.003")
    parser.add_argument("--betas", default="0.1,0.5", help="β of the sigmoid loss (kto_pair runs at the first)")
    parser.add_argument("--losses", default="sigmoid,kto_pair")
    parser.add_argument("--present-tolerance", type=float, default=0.01)
    parser.add_argument("--out", default=None, help="also write the table and the choice as JSON here")
    return parser.parse_args()


def settings(args) -> list[tuple[str, str, str]]:
    """(loss, lr, β) as given on the command line (the strings name the run folders), the control first."""
    betas = args.betas.split(",")
    grid = [("sigmoid", CONTROL_LR, betas[0])]
    for loss in args.losses.split(","):
        for lr in args.lrs.split(","):
            grid += [(loss, lr, beta) for beta in (betas if loss == "sigmoid" else betas[:1])]
    return grid


def train(root: Path, run_id: str, seed: int, overrides: list[str]) -> dict:
    """The run's record, trained first unless the folder holds a finished run."""
    record = root / TASK / run_id / "record.json"
    if not record.exists():
        code = zoo(["train", f"task={TASK}", "stages=llava_mod", f"seed={seed}", f"run.root={root}",
                    f"run.id={run_id}", "trainer.enable_progress_bar=false", *overrides])
        if code != 0:
            raise SystemExit(f"run {run_id} failed (exit {code})")
    return json.loads(record.read_text())


def main() -> None:
    args = parse_args()
    root = Path(args.root).expanduser()
    stages = [stage["name"] for stage in compose(TASK, ["stages=llava_mod"]).stages]
    k = stages.index("preference")  # its index in the stages list; its folder is stages/<k+1>-preference
    base_id = f"base_d_s{args.seed}"
    train(root, base_id, args.seed, [])
    rows = []
    for loss, lr, beta in settings(args):
        run_id = f"t_control_lr{lr}" if lr == CONTROL_LR else f"t_{loss}_lr{lr}_b{beta}"
        folder = root / TASK / run_id
        if not (folder / "record.json").exists():
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted trial starts over from the copied stages
            for number, name in enumerate(stages[:k], start=1):
                shutil.copytree(root / TASK / base_id / "stages" / f"{number}-{name}",
                                folder / "stages" / f"{number}-{name}")
        record = train(root, run_id, args.seed, [f"stages.{k}.method.loss_type={loss}", f"stages.{k}.optim.lr={lr}",
                                                 f"stages.{k}.method.beta={beta}"])
        rows.append({"run": run_id, "loss": loss, "lr": lr, "beta": beta,
                     **{name: record["metrics"][f"val/{name}"] for name in SHOWN},
                     "test": {name: record["metrics"][f"test/{name}"] for name in SHOWN}})
    control = rows[0]
    within = [row for row in rows[1:] if row["acc_present"] >= control["acc_present"] - args.present_tolerance]
    chosen = min(within, key=lambda row: row["hallucination"], default=None)
    print(f"{'setting (val/, seed ' + str(args.seed) + ')':32}" + "".join(f"{name:>16}" for name in SHOWN))
    for row in rows:
        print(f"{row['run']:32}" + "".join(f"{row[name]:16.3f}" for name in SHOWN))
    print("chosen:", chosen["run"] if chosen else
          f"none within {args.present_tolerance} of the control's present-object accuracy: the task's setting stays")
    if args.out:
        Path(args.out).write_text(json.dumps({"seed": args.seed, "rows": rows, "chosen": chosen}, indent=2))


if __name__ == "__main__":
    main()
