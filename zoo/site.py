"""The leaderboard site: leaderboards/site/, written by ``zoo leaderboard`` with the Markdown and CSV boards.

    site/index.html       every task: its best measured student against the baseline arm and the teacher
    site/<task>.html      the task's board as a sortable table, its plots (``zoo.board_plots``: the headline metric
                          against cost, and any plot a method adds), the settings and records of each row
    site/<task>-<plot>.svg, site/<task>.csv, site/style.css, site/sort.js

Nothing is fetched at view time (no CDN, no web font), so any static host or a plain file browser serves the
folder. The pages carry no date and the plots no stamp (``zoo.figures``): the same records give the same bytes,
and the folder is replaced on every regeneration (``zoo.atomic.atomic_folder``: what the zoo wrote there, listed in
its ``.zoo-written``), so a page of a task that left the boards goes with it.
"""

import html
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from zoo.atomic import WRITTEN, atomic_folder

ASSETS = ("style.css", "sort.js")


@dataclass
class Cell:
    text: str
    sort: float | None = None     # a number to sort by; None: sort by the text
    number: bool = False          # right-aligned, sorted as a number

    def html(self) -> str:
        if not self.number:
            return f"<td>{html.escape(self.text)}</td>"
        key = "" if self.sort is None else f"{float(self.sort):.10g}"  # enough to order by, no float noise
        return f'<td class="number" data-sort="{key}">{html.escape(self.text)}</td>'


def write_site(boards: list, out: Path) -> list[Path]:
    """Write the whole site for ``boards`` (``zoo.leaderboard.Board``) into ``out``; returns its files."""
    from zoo.board_cells import render_csv
    from zoo.board_plots import plots_of
    from zoo.figures import figure_bytes

    with atomic_folder(out, may_replace=lambda folder: (folder / WRITTEN).is_file(),
                       what="a leaderboard site the zoo wrote", hint="move that folder away first") as tmp:
        for name in ASSETS:
            (tmp / name).write_bytes(resources.files("zoo").joinpath("site_assets", name).read_bytes())
        for board in boards:
            figures = []
            for plot in plots_of(board):
                (tmp / f"{board.task}-{plot.name}.svg").write_bytes(figure_bytes(plot.figure, "svg"))
                figures.append(plot)
            (tmp / f"{board.task}.csv").write_text(
                render_csv(board.rows, board.metrics, board.gain_header, board.older), encoding="utf-8")
            (tmp / f"{board.task}.html").write_text(task_page(board, figures), encoding="utf-8")
        (tmp / "index.html").write_text(index_page(boards), encoding="utf-8")
    return sorted(path for path in out.iterdir() if not path.name.startswith("."))


# --- pages ----------------------------------------------------------------------------------------------------


def page(title: str, body: list[str]) -> str:
    return "\n".join(['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{html.escape(title)}</title>", '<link rel="stylesheet" href="style.css">',
                      '<script src="sort.js" defer></script>', "</head>", "<body>", *body, "</body>", "</html>", ""])


def table(headers: list[tuple[str, bool]], rows: list[tuple[str, list[Cell]]]) -> list[str]:
    """A sortable table: ``headers`` are (text, numeric), ``rows`` (css class, cells)."""
    head = "".join(f'<th data-type="{"number" if numeric else "text"}">{html.escape(text)}</th>'
                   for text, numeric in headers)
    lines = ['<div class="table-wrap">', '<table class="board sortable">', f"<thead><tr>{head}</tr></thead>",
             "<tbody>"]
    lines += [f'<tr class="{css}">' + "".join(cell.html() for cell in cells) + "</tr>" for css, cells in rows]
    return lines + ["</tbody>", "</table>", "</div>"]


def stamp(board) -> str:
    from zoo.board_cells import OLDER

    if not board.code:
        return "Code commit unknown (not a git checkout)."
    return (f"Generated from the run records at code commit {board.code}, the last commit that changed zoo/, "
            f"tasks/ or pyproject.toml. {OLDER} in the last column: that row's runs were made before it "
            f"(<code>zoo reproduce task={html.escape(board.task)}</code> says whether today's code agrees).")


def task_page(board, plots: list) -> str:
    from zoo import board_cells

    columns = board_cells.cost_columns(board.rows)
    headers = [("variant", False), ("source", False), *((m, True) for m in board.metrics), (board.gain_header, True),
               *((c, c not in ("teacher", "student")) for c in columns), ("from", False)]
    rows = [(row_class(board, row), [Cell(row.variant), Cell(row.source),
                                     *(metric_cell(row, m) for m in board.metrics),
                                     Cell(board_cells.gain_cell(row), row.gain, True),
                                     *cost_cells(row, columns), Cell(board_cells.from_cell(row, board.older[i]))])
            for i, row in enumerate(board.rows)]
    body = ['<nav><a href="index.html">All tasks</a></nav>', f"<h1>{html.escape(board.task)}</h1>",
            f'<p class="stamp">{stamp(board)}</p>',
            '<p class="explain">One row per variant (its <code>reproduce.arms</code> name, else its method): mean ± '
            "sample std over seeds of each test metric, the headline first. Paper rows (italic) quote the paper. "
            f"{html.escape(board.gain_header)}: difference in mean {html.escape(board.headline)} from the baseline "
            "row of the same student. MFLOPs: forward FLOPs per sample; onnx latency: onnxruntime p50 at batch 1 "
            "(CPU) from <code>zoo bench</code>. Click a column's header to sort by it, again to reverse.</p>",
            *table(headers, rows),
            f'<p class="explain">The same table for machines: <a href="{html.escape(board.task)}.csv">'
            f"{html.escape(board.task)}.csv</a>.</p>"]
    for plot in plots:
        source = html.escape(f"{board.task}-{plot.name}.svg")
        body += [f"<h2>{html.escape(plot.title)}</h2>", "<figure>",
                 f'<img src="{source}" alt="{html.escape(plot.title)}">',
                 f"<figcaption>{html.escape(plot.caption)}</figcaption>", "</figure>"]
    body += ["<h2>Settings and records of each row</h2>", '<ul class="settings">',
             *(f"<li><code>{html.escape(row.variant)}</code>: {html.escape(settings_of(row))}</li>"
               for row in board.rows), "</ul>"]
    return page(f"zoo · {board.task}", body)


def index_page(boards: list) -> str:
    headers = [("task", False), ("headline", False), ("best student", False), ("its score", True),
               ("gain over baseline", True), ("baseline", False), ("baseline score", True), ("teacher score", True),
               ("best student's MFLOPs", True), ("variants", True), ("paper rows", True)]
    rows = []
    for board in boards:
        best, base, teacher = best_row(board), baseline_row(board), teacher_row(board)
        rows.append(("task", [Cell(board.task), Cell(board.headline), Cell(best.variant if best else "—"),
                              headline_cell(board, best), gain_cell(board, best, base),
                              Cell(base.variant if base else "—"), headline_cell(board, base),
                              headline_cell(board, teacher),
                              Cell(f"{best.flops / 1e6:.3g}" if best and best.flops else "",
                                   best.flops / 1e6 if best and best.flops else None, True),
                              count(board, "measured"), count(board, "paper")]))
    links = [f'<li><a href="{html.escape(b.task)}.html">{html.escape(b.task)}</a></li>' for b in boards]
    body = ["<h1>zoo leaderboards</h1>",
            '<p class="explain">Each task\'s best measured student (highest mean headline metric over seeds, the '
            "teacher aside) against the task's baseline arm and its teacher, from the run records in "
            "leaderboards/records/. A task's page has the full board, its settings and an accuracy-against-cost "
            "plot. Click a column's header to sort by it.</p>",
            *table(headers, rows), "<h2>Tasks</h2>", "<ul>", *links, "</ul>"]
    return page("zoo leaderboards", body)


# --- cells ----------------------------------------------------------------------------------------------------


def row_class(board, row) -> str:
    if row.source == "paper":
        return "paper"
    if row.variant == "teacher":
        return "teacher"
    return "baseline" if row.arm is not None and row.arm == board.baseline else "measured"


def metric_cell(row, metric: str) -> Cell:
    from zoo.board_cells import metric_cell as text
    from zoo.board_cells import value_of

    return Cell(text(row, metric), value_of(row, metric), True)


def cost_cells(row, columns: tuple[str, ...]) -> list[Cell]:
    from zoo.board_cells import cost_cells as texts

    numbers = {"seeds": len(row.records) if row.source != "paper" else None, "student params": row.params,
               "student MFLOPs": row.flops / 1e6 if row.flops else None, "onnx latency ms": row.latency_ms,
               "teacher forward passes": row.passes, "teacher queries": row.queries}
    return [Cell(text) if column in ("teacher", "student") else Cell(text, numbers.get(column), True)
            for column, text in zip(columns, texts(row, ",", columns), strict=True)]


def settings_of(row) -> str:
    if row.source == "paper":
        return f"paper ({row.student}): {row.citation}"
    if row.variant == "teacher":
        return f"{row.student}, evaluated in run {row.records[0].run_id}"
    return f"{row.settings}; runs {', '.join(sorted(r.run_id for r in row.records))}"


def best_row(board):
    students = [row for row in board.rows if row.source == "measured" and row.variant != "teacher"
                and row.mean(board.headline) is not None]
    return max(students, key=lambda row: row.mean(board.headline), default=None)


def baseline_row(board):
    return next((row for row in board.rows if row.arm is not None and row.arm == board.baseline), None)


def teacher_row(board):
    return next((row for row in board.rows if row.variant == "teacher" and row.source == "measured"), None)


def headline_cell(board, row) -> Cell:
    if row is None:
        return Cell("", None, True)
    return metric_cell(row, board.headline)


def gain_cell(board, best, base) -> Cell:
    if best is None or base is None or best is base or base.mean(board.headline) is None:
        return Cell("", None, True)
    gain = best.mean(board.headline) - base.mean(board.headline)
    return Cell(f"{gain:+.4f}", gain, True)


def count(board, source: str) -> Cell:
    n = sum(1 for row in board.rows if row.source == source and row.variant != "teacher")
    return Cell(str(n), n, True)
