"""Learning curves of active tasks (``zoo.active``) for their leaderboards: each variant's test metric after every
round against the teacher queries bought so far, and the fraction of each round's queries the teacher answered
wrongly, mean ± sample std over seeds. ``zoo leaderboard`` puts them under the table as Markdown and beside it as
``<task>.png``; both are generated from the records' ``rounds`` alone, byte for byte the same from the same records.
"""

import statistics
from dataclasses import dataclass
from pathlib import Path

from zoo.atomic import atomic_write_bytes


@dataclass
class Curve:
    variant: str
    queries: list[int]            # teacher queries after each round (0 after round 0)
    metric: list[list[float]]     # per round: the test metric of each seed
    wrong: list[list[float]]      # per round from 1: the fraction of that round's queries the teacher got wrong


def curves_of(rows, metric: str) -> list["Curve"]:
    """A curve per measured row whose runs all went through the same rounds."""
    found = []
    for row in rows:
        if row.source != "measured" or row.variant == "teacher" or not row.records:
            continue  # the teacher row holds the record it was measured in: not a curve of its own
        if not all(r.rounds for r in row.records):
            continue
        schedules = {tuple(rd["queries_total"] for rd in r.rounds) for r in row.records}
        if len(schedules) != 1:
            continue  # runs of one variant with different budgets: no common axis
        rounds = [r.rounds for r in row.records]
        found.append(Curve(row.variant, list(schedules.pop()),
                           [[rs[i]["metrics"][metric] for rs in rounds] for i in range(len(rounds[0]))],
                           [[rs[i]["teacher_wrong"] for rs in rounds] for i in range(1, len(rounds[0]))]))
    return found


def _cell(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def markdown(curves: list[Curve], metric: str, task: str) -> list[str]:
    """Two tables: the metric by queries, and the teacher's error on each round's queries."""
    if not curves:
        return []
    queries = curves[0].queries
    same = all(c.queries == queries for c in curves)
    lines = ["", f"## {metric} by teacher queries", "",
             f"Each round's student, mean ± std over seeds (plot: `{task}.png`). Round 0 is the student on the "
             "labelled set alone.", ""]
    if not same:
        lines.append("(The variants bought different numbers of queries: each row lists its own.)")
        lines.append("")
    lines += ["| variant | " + " | ".join(str(q) for q in queries) + " |", "|---|" + "---|" * len(queries)]
    for c in curves:
        cells = [_cell(v) for v in c.metric] if c.queries == queries else \
            [f"{q}: {_cell(v)}" for q, v in zip(c.queries, c.metric, strict=True)]
        lines.append(f"| {c.variant} | " + " | ".join(cells) + " |")
    lines += ["", "## Fraction of each round's queries the teacher answered wrongly", "",
              "Measured with the true labels, which no selector but the oracle reads.", "",
              "| variant | " + " | ".join(f"round {i}" for i in range(1, len(queries))) + " | all rounds |",
              "|---|" + "---|" * len(queries)]
    for c in curves:
        overall = [statistics.fmean(seed) for seed in zip(*c.wrong, strict=True)]  # equal budgets per round
        lines.append(f"| {c.variant} | " + " | ".join(_cell(v) for v in c.wrong) + f" | {_cell(overall)} |")
    return lines


def figure(curves: list[Curve], metric: str, task: str):
    """Two panels: the student's metric by teacher queries (mean ± std band), and the teacher's error per round."""
    from zoo.figures import pyplot

    figure, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for c in curves:
        means = [statistics.fmean(v) for v in c.metric]
        spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in c.metric]
        left.plot(c.queries, means, marker="o", label=c.variant)
        left.fill_between(c.queries, [m - s for m, s in zip(means, spread, strict=True)],
                          [m + s for m, s in zip(means, spread, strict=True)], alpha=0.15)
        right.plot(c.queries[1:], [statistics.fmean(v) for v in c.wrong], marker="o", label=c.variant)
    left.set(xlabel="teacher queries", ylabel=metric, title=f"{task}: student {metric} (mean ± std over seeds)")
    right.set(xlabel="teacher queries", ylabel="fraction answered wrongly",
              title="the teacher's error on each round's queries")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def write_png(curves: list[Curve], metric: str, task: str, path: Path) -> bool:
    """The two panels as a PNG (``zoo.figures``: no timestamp or version stamp); False (nothing written) without
    curves."""
    from zoo.figures import figure_bytes

    if not curves:
        return False
    atomic_write_bytes(path, figure_bytes(figure(curves, metric, task), "png"))
    return True
