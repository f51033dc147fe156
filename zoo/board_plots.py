"""The plots on a task's site page (``zoo.site``).

Every producer in ``PLOTS`` gets the task's board (``zoo.leaderboard.Board``) and returns its figures, none when
the board has nothing for it. A method or run shape with a picture of its own adds a producer here, as the active
runs' learning curves do (``zoo.curves``), and its plot reaches the page through the same code as the cost plot.

The cost plot: the headline metric against the student's forward MFLOPs and, where runs were benched
(``zoo bench``), against ONNX latency at batch 1; against parameters where a board has neither (text students,
whose FLOPs the records do not count). Each row is a point, measured rows with their std over seeds as
an error bar; the Pareto front of the measured rows (those that no other measured row beats at no more cost) is
a dashed step line; the teacher is a star, the baseline arm a square, a paper's number a hollow diamond.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zoo.board_cells import value_of


@dataclass
class Plot:
    name: str       # the file under site/ is <task>-<name>.svg
    title: str
    caption: str
    figure: Any     # a matplotlib Figure, saved and closed by zoo.site


@dataclass
class Point:
    x: float
    y: float
    std: float
    label: str
    role: str       # teacher | baseline | variant | paper


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points on the front, cheapest first: a point is on it when every cheaper-or-equal point is
    worse (lower cost and higher metric are better; of equal points the first is kept)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _points(board, cost: Callable[[Any], float | None]) -> list[Point]:
    found = []
    for row in board.rows:
        x = cost(row)
        if x is None:
            continue
        value = value_of(row, board.headline)
        if value is None:
            continue
        if row.source == "paper":
            found.append(Point(x, value, 0.0, f"{row.variant} (paper)", "paper"))
            continue
        role = "teacher" if row.variant == "teacher" else "baseline" if row.arm == board.baseline else "variant"
        found.append(Point(x, value, row.std(board.headline) or 0.0, row.variant, role))
    return found


_STYLE = {"teacher": dict(marker="*", s=170, color="C3", label="teacher"),
          "baseline": dict(marker="s", s=55, color="C1", label="baseline arm"),
          "variant": dict(marker="o", s=45, color="C0", label="variant"),
          "paper": dict(marker="D", s=45, facecolors="none", edgecolors="C2", label="paper (quoted)")}


def _panel(axes, points: list[Point], xlabel: str, metric: str) -> None:
    for role, style in _STYLE.items():
        mine = [p for p in points if p.role == role]
        if not mine:
            continue
        axes.errorbar([p.x for p in mine], [p.y for p in mine], yerr=[p.std for p in mine], fmt="none",
                      ecolor="0.55", elinewidth=1, capsize=2, zorder=1)
        axes.scatter([p.x for p in mine], [p.y for p in mine], zorder=3, **style)
        for p in mine:
            axes.annotate(p.label, (p.x, p.y), xytext=(5, 4), textcoords="offset points", fontsize=7)
    measured = [p for p in points if p.role != "paper"]
    front = [measured[i] for i in pareto_front([(p.x, p.y) for p in measured])]
    if len(front) > 1:
        axes.step([p.x for p in front], [p.y for p in front], where="post", color="0.4", linestyle="--",
                  linewidth=1, zorder=2, label="Pareto front")
    xs = [p.x for p in points]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        axes.set_xscale("log")
    axes.set(xlabel=xlabel, ylabel=metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best")  # "best" keeps the legend off the points


ACTIVE_PARAMS = "test/params_active"  # a visual_qa metric: a mixture of experts runs its chosen experts only


def params_at_work(row) -> float | None:
    """Millions of the parameters a row's model runs per token: the activated ones where measured (an upcycled
    student's top-2 of 4 experts, not all 4), else all of them."""
    count = row.mean(ACTIVE_PARAMS) or row.params
    return count / 1e6 if count else None


def cost_plot(board) -> list[Plot]:
    from zoo.figures import pyplot

    by_flops = _points(board, lambda row: row.flops / 1e6 if row.flops else None)
    by_latency = _points(board, lambda row: row.latency_ms)
    panels = [(p, label) for p, label in ((by_flops, "forward MFLOPs per sample"),
                                          (by_latency, "ONNX latency, ms at batch 1 (CPU)")) if p]
    if not panels:  # no FLOPs counted (text, vision-language students) and none benched: size is the cost left
        by_params = _points(board, params_at_work)
        active = any(row.mean(ACTIVE_PARAMS) is not None for row in board.rows)
        label = "parameters activated per token, millions" if active else "student parameters, millions"
        panels = [(by_params, label)] if by_params else []
    if not panels:
        return []
    figure, axes = pyplot().subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), dpi=100, squeeze=False)
    for ax, (points, label) in zip(axes[0], panels, strict=True):
        _panel(ax, points, label, board.headline)
    figure.suptitle(f"{board.task}: {board.headline} against cost")
    figure.tight_layout()
    latency = "" if by_latency else " No run on this board was benched, so there is no latency panel."
    return [Plot("cost", f"{board.headline} against cost",
                 f"Mean over seeds with the std as a bar; dashed, the Pareto front of the measured rows (none of "
                 f"them is better at no more cost).{latency}", figure)]


def curves_plot(board) -> list[Plot]:
    from zoo import curves

    found = curves.curves_of(board.rows, board.headline)
    if not found:
        return []
    return [Plot("curves", f"{board.headline} by teacher queries",
                 "Each round's student, mean ± std over seeds, and the fraction of each round's queries the teacher "
                 "answered wrongly (measured with the true labels).", curves.figure(found, board.headline, board.task))]


def attention_plot(board) -> list[Plot]:
    from zoo import attention_distance

    found = attention_distance.board_statistics(board.rows)
    if not found:
        return []
    return [Plot("attention", "attention per block",
                 "Mean attention distance and normalised entropy of each block, mean over heads, on the same "
                 "validation images: each variant's student after distillation (seed 0) and the teachers (dashed).",
                 attention_distance.board_figure(found, board.task))]


PLOTS: list[Callable[[Any], list[Plot]]] = [cost_plot, curves_plot, attention_plot]


def plots_of(board) -> list[Plot]:
    return [plot for produce in PLOTS for plot in produce(board)]
