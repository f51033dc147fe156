"""DisWOT's ground truth on a mini task: every candidate of the search space trained for real, with KD and with CE,
against every training-free proxy's ranking, and the cost of one against the other, measured in one run.

For each candidate (all of the space, or ``--limit`` of them drawn with a fixed seed) it trains the task's student
two ways, ``kd`` (the task's method) and ``ce``, for the task's epochs (``--epochs`` to shorten), one run record
each under ``--root``; finished runs are read, not redone. It then scores the same candidates with every proxy
(``zoo.search``: DisWOT, its two terms, SynFlow, NWOT, #params, FLOPs, random), per scoring seed, and reports
Kendall tau and Spearman rho of each proxy against the KD test accuracy (mean ± std over the scoring seeds), the
same against CE accuracy, whether the best CE architecture is the best KD student (the paper's premise), and the
ratio of the seconds spent KD-training the candidates to the seconds spent scoring them.

    python benchmarks/diswot_ground_truth.py --task diswot_digits [--limit 24] [--epochs 10] [--out table.md]
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from zoo.config import compose
from zoo.records import read_record
from zoo.search.proxies import PROXIES
from zoo.search.run import find_student
from zoo.train import train


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="diswot_digits")
    parser.add_argument("--limit", type=int, default=None, help="train this many candidates (a seeded draw)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per candidate (default: the task's)")
    parser.add_argument("--root", default=None, help="run folders (default runs/<task>_ground_truth)")
    parser.add_argument("--out", default=None, help="also write the Markdown tables here")
    parser.add_argument("--methods", nargs="+", default=["kd", "ce"], choices=["kd", "ce"],
                        help="train only these (two processes can split the work); the tables need both")
    parser.add_argument("overrides", nargs="*", help="further task overrides, e.g. data.train_subset=5000")
    return parser.parse_args()


def finished(root: Path) -> dict[tuple[str, str], Path]:
    """(method, student arch) -> record of every finished run under ``root``."""
    found = {}
    for path in root.glob("*/*/record.json"):
        record = read_record(path)
        found[(record.method, record.student.name)] = path
    return found


def correlations(scores: list[float], truth: list[float]) -> tuple[float, float]:
    return float(kendalltau(scores, truth).statistic), float(spearmanr(scores, truth).statistic)


def cell(values: list[float]) -> str:
    return f"{statistics.fmean(values):+.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def main() -> None:
    args = parse_args()
    root = Path(args.root or f"runs/{args.task}_ground_truth")
    base = [f"run.root={root}", "trainer.enable_progress_bar=false", *args.overrides]
    if args.epochs is not None:
        base.append(f"trainer.max_epochs={args.epochs}")
    started = time.perf_counter()
    search = find_student(compose(args.task, base + ["search.strategy=exhaustive", "search.budget.mflops=null",
                                                     "search.budget.params=null"]), say=lambda *a: None,
                          write=False).summary  # the whole space, whatever the task's budget
    ranking = search["ranking"]
    if args.limit is not None:
        picks = np.sort(np.random.default_rng(0).choice(len(ranking), size=args.limit, replace=False))
        ranking = [ranking[i] for i in picks]
    scoring_seconds = sum(e["seconds"] for e in ranking)
    names = [e["name"] for e in ranking]
    done = finished(root)  # read once: each process trains its own methods, so none of its skips can go stale
    for method in args.methods:
        for i, name in enumerate(names, start=1):
            if (method, name) not in done:
                print(f"[{time.perf_counter() - started:7.0f} s] {method} {i}/{len(names)} {name}", flush=True)
                train(compose(args.task, base + [f"method={method}", f"student.arch={name}"]), say=lambda *a: None)
    runs = finished(root)
    if any((method, name) not in runs for method in ("kd", "ce") for name in names):
        print("trained what was asked; run again with both methods for the tables")
        return
    records = {key: read_record(path) for key, path in runs.items()}
    kd = [records[("kd", n)].metrics["test/acc"] for n in names]
    ce = [records[("ce", n)].metrics["test/acc"] for n in names]
    kd_seconds = sum(records[("kd", n)].wall_time_s.get("fit", 0.0) for n in names)
    seeds = len(ranking[0]["per_seed"]["diswot"])
    epochs = records[("kd", names[0])].config["trainer"]["max_epochs"]
    options = (f" --limit {args.limit}" if args.limit else "") + (f" --epochs {args.epochs}" if args.epochs else "")
    lines = [f"# {args.task}: training-free proxies against trained candidates", "",
             f"Written by `python benchmarks/diswot_ground_truth.py --task {args.task}{options}`"
             f". {len(names)} candidates of space {search['space']}, each KD- and CE-trained once (seed 0, {epochs} "
             f"epochs); proxies averaged over one batch per scoring seed, correlations mean ± std over {seeds} scoring "
             "seeds.", "",
             "| proxy | Kendall tau vs KD acc | Spearman rho vs KD acc | Kendall tau vs CE acc |", "|---|---|---|---|"]
    for proxy in PROXIES:
        per_seed = [[e["per_seed"][proxy][s] for e in ranking] for s in range(seeds)]
        kd_corr = [correlations(values, kd) for values in per_seed]
        ce_corr = [correlations(values, ce)[0] for values in per_seed]
        lines.append(f"| {proxy} | {cell([c[0] for c in kd_corr])} | {cell([c[1] for c in kd_corr])} | "
                     f"{cell(ce_corr)} |")
    best_kd, best_ce = names[int(np.argmax(kd))], names[int(np.argmax(ce))]
    lines += ["", f"KD vs CE accuracy over the candidates: Kendall tau {correlations(ce, kd)[0]:+.3f}. Best KD "
              f"student {best_kd} ({max(kd):.4f}); best CE architecture {best_ce} ({max(ce):.4f}, KD "
              f"{kd[names.index(best_ce)]:.4f}).", "",
              f"Cost: scoring all {len(names)} candidates ({seeds} seeds) took {scoring_seconds:.1f} s; KD-training "
              f"them took {kd_seconds:.0f} s: {kd_seconds / max(scoring_seconds, 1e-9):.0f}x.", "",
              "| candidate | params | MFLOPs | KD acc | CE acc | diswot | synflow | nwot |",
              "|---|---|---|---|---|---|---|---|"]
    for e, k, c in sorted(zip(ranking, kd, ce, strict=True), key=lambda t: -t[1]):
        lines.append(f"| {e['name']} | {e['params']:,} | {e['mflops']:.3g} | {k:.4f} | {c:.4f} | "
                     f"{e['scores']['diswot']:.4g} | {e['scores']['synflow']:.4g} | {e['scores']['nwot']:.4g} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
