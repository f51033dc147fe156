"""The cells of a board, shared by its Markdown and CSV (``zoo.leaderboard``) and its site page (``zoo.site``): a
metric as mean ± std (a paper's number as quoted), the gain, the cost columns, where a row's numbers come from, and
the CSV itself. They read a ``zoo.leaderboard.Row`` and nothing else, so the site needs no import of the
leaderboard module, which writes it.
"""

import csv
import io
import statistics

OLDER = "†"  # a row whose runs predate the board's code commit
COST_COLUMNS = ("seeds", "teacher", "student", "student params", "student MFLOPs", "onnx latency ms",
                "teacher forward passes")


def metric_names(rows: list, metric: str) -> list[str]:
    """Every metric some row reports, the headline first."""
    names = sorted({k for row in rows for k in row.metrics} - {metric})
    return [metric, *names]


def _mflops(flops: int | None) -> str:
    return f"{flops / 1e6:.3g}" if flops else ""


def _number(value: float) -> str:
    return f"{value:.4f}"


def _shown(value: float) -> str:
    """A table cell's number: four decimals, or whole numbers with thousands separators from 1,000 up (counts of
    parameters, tokens per second), where decimals say nothing. The .csv keeps ``_number``'s."""
    return f"{value:,.0f}" if abs(value) >= 1000 else _number(value)


def quoted(value: float) -> str:
    """A paper's number with four decimals like the measured ones, or all of its own if it has more."""
    return _number(value) if round(value, 4) == value else str(value)


def value_of(row, metric: str) -> float | None:
    """The number a row stands for in ``metric``: a paper row's quoted value, a measured row's mean over seeds."""
    if row.source == "paper":
        values = row.metrics.get(metric)
        return values[0] if values else None
    return row.mean(metric)


def metric_cell(row, metric: str) -> str:
    values = row.metrics.get(metric)
    if not values:
        return ""
    if row.source == "paper":
        return quoted(values[0])
    mean, std = statistics.fmean(values), row.std(metric)
    if std is None:
        return _shown(mean)
    return f"{_shown(mean)} ± {f'{std:,.0f}' if abs(mean) >= 1000 else _number(std)}"


def commits_of(row) -> list[str]:
    return sorted({(r.git_commit or "unknown")[:7] for r in row.records})


def from_cell(row, older: bool) -> str:
    if row.source == "paper":
        return row.citation
    return "runs at " + ", ".join(commits_of(row)) + (f" {OLDER}" if older else "")


def cost_columns(rows: list) -> tuple[str, ...]:
    """The cost columns of a board: teacher queries only where some row bought its teacher's answers."""
    return COST_COLUMNS + (("teacher queries",) if any(row.queries is not None for row in rows) else ())


def cost_cells(row, thousands: str, columns: tuple[str, ...] = COST_COLUMNS) -> list[str]:
    params = "" if row.params is None else format(row.params, thousands)
    cells = ["" if row.source == "paper" else str(len(row.records)), row.teacher, row.student, params,
             _mflops(row.flops), "" if row.latency_ms is None else f"{row.latency_ms:.3f}",
             "" if row.passes is None else f"{row.passes:.0f}"]
    if "teacher queries" in columns:
        cells.append("" if row.queries is None else format(round(row.queries), thousands))
    return cells


def gain_cell(row) -> str:
    return "" if row.gain is None else f"{row.gain:+.4f}"


def render_csv(rows: list, metrics: list[str], gain_header: str, older: dict[int, bool]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["variant", "source", *(h for m in metrics for h in (m, f"{m} std")), gain_header,
                     *cost_columns(rows), "settings", "commits", "older than code", "from"])
    for i, row in enumerate(rows):
        values = []
        for m in metrics:
            mean, std = row.mean(m), row.std(m)
            if row.source == "paper":
                values.append(quoted(row.metrics[m][0]) if m in row.metrics else "")
            else:
                values.append("" if mean is None else _number(mean))
            values.append("" if std is None else _number(std))
        ids = " ".join(sorted(f"record:{r.run_id}" for r in row.records))
        writer.writerow([row.variant, row.source, *values, gain_cell(row), *cost_cells(row, "", cost_columns(rows)),
                         row.settings,
                         " ".join(commits_of(row)) if row.records else "",
                         ("yes" if older[i] else "no") if row.records else "",
                         ids if row.records else f"paper:{row.citation}"])
    return out.getvalue()
