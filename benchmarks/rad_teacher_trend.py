"""RAD against its baselines as the teacher gets worse: the spec expects RAD's edge over uncertainty sampling to
widen as the teacher makes more mistakes. The teacher of ``rad_fashion_mnist`` is trained on slices of growing
size (fewer images: a worse teacher); every arm runs for each seed on the same L and pool, drawn from one slice that
no teacher sees (``--data-slice``), so only the teacher changes between levels.

For each teacher level and arm it prints the student's test (and val) accuracy after the last round, mean ± std
over seeds, and the fraction of the arm's queries the teacher answered wrongly. Runs already in ``--root`` are
read, not redone (their records are the results), so an interrupted trend resumes.

    python benchmarks/rad_teacher_trend.py [--teachers 500 2000 8000] [--seeds 3] [--root runs/rad_trend]
"""

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from zoo.config import compose
from zoo.records import read_record
from zoo.train import train

ARMS = ("uniform", "margin", "entropy", "rad", "oracle")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teachers", type=int, nargs="+", default=[500, 2000, 8000],
                        help="training images of each teacher level (its slice is [0, N])")
    parser.add_argument("--data-slice", type=int, default=8000, help="L and the pool come from [N, end]")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--arms", nargs="+", default=list(ARMS))
    parser.add_argument("--root", default="runs/rad_trend", help="run folders: <root>/teacher<N>/...")
    parser.add_argument("overrides", nargs="*", help="further task overrides, e.g. active.rounds=2")
    return parser.parse_args()


def done_runs(root: Path) -> dict[tuple[str, int], Path]:
    """(selector, seed) -> record of every finished run under ``root``."""
    found = {}
    for path in root.glob("rad_fashion_mnist/*/record.json"):
        record = read_record(path)
        found[(record.config["active"]["selector"], record.seed)] = path
    return found


def wrong_fraction(record) -> float:
    rounds = record.rounds[1:]
    return sum(r["teacher_wrong"] * r["queries"] for r in rounds) / sum(r["queries"] for r in rounds)


def cell(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f}" + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else "")


def main() -> None:
    args = parse_args()
    lines = ["| teacher images | teacher test acc | arm | test acc | val acc | teacher wrong on queries |",
             "|---|---|---|---|---|---|"]
    for images in args.teachers:
        root = Path(args.root) / f"teacher{images}"
        overrides = [f"data.train_slice=[{args.data_slice},null]", f"teacher.recipe.data.train_slice=[0,{images}]",
                     f"run.root={root}", "trainer.enable_progress_bar=false", *args.overrides]
        done = done_runs(root)  # read once per level, not once per run
        for arm in args.arms:
            for seed in range(args.seeds):
                if (arm, seed) not in done:
                    train(compose("rad_fashion_mnist", [*overrides, f"active.selector={arm}", f"seed={seed}"]))
        records = defaultdict(list)
        for (arm, _), path in sorted(done_runs(root).items()):
            records[arm].append(read_record(path))
        for arm in args.arms:
            group = records[arm]
            lines.append(f"| {images} | {group[0].teacher_metrics['test/acc']:.4f} | {arm} | "
                         f"{cell([r.metrics['test/acc'] for r in group])} | "
                         f"{cell([r.metrics['val/acc'] for r in group])} | "
                         f"{cell([wrong_fraction(r) for r in group])} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
