"""Leaderboards: leaderboards/<task>.md and .csv, generated, never edited by hand.

Measured rows come from the run records in leaderboards/records/*.json (put
there by ``zoo leaderboard add=<run folder or reproduce summary>``). Runs of the
same task, arm, method settings, teachers and student are one row, a *variant*,
with each metric's mean ± sample std over their seeds; a variant whose seed was run
again at a later commit is one row per commit instead, so that no seed counts twice
(the newest runs keep the name, older ones are labelled by their commit). A variant
is named after the ``reproduce.arms`` entry its runs match (``kd_t2``, ``alone``, ``dense_zero_shot``;
see ``matches``), else after its method (``clockdistill``, ``dense_ce_untrained``), with
``#2``, ``#3`` added where a name repeats; its full settings and records are listed once,
below the table. A run benched with ``zoo bench run=...`` before it was added brings its
bench record along (<task>__<run-id>.bench.json), which fills the ONNX latency column.
A record with a NaN or infinite metric (a diverged or damaged run) is refused by name before
anything is copied, and one already among the records stops a regeneration in one line.
Paper rows come from the ``paper:`` block of the task's YAML and say so.

Columns: variant, source (measured or paper), then one column per metric of the test
split, the task kind's headline metric first (``zoo.kinds``: test/acc, test/map, ...), the
gain over the task's baseline arm (``reproduce.baseline``) on that metric, and the cost
columns. In the .md a metric cell is ``mean ± std``; the .csv, for machines, gives each
metric as two columns, ``<metric>`` (the mean, or the paper's number as quoted) and
``<metric> std``, plain integers for sizes, and the settings, commits and record ids in
their own columns.

Rows from older code are marked (†): a row's records were made at a commit that does not
contain the *code commit*, the last commit that changed zoo/, tasks/ or pyproject.toml
(so today's code may give other numbers; ``zoo reproduce`` says whether it does). The
code commit is written in the board's header, so a board depends on the records, the
task YAMLs and that one commit only: committing regenerated boards, which touches only
leaderboards/, does not change it. Output is deterministic: same inputs, same bytes.

A paper row in a task YAML looks like (``name`` is optional; the method by default):

    paper:
      - {method: meal_v2, teacher: "senet154 + resnet152_v1s", student: resnet50,
         params: 25600000, metrics: {test/acc: 0.8067}, source: "Shen & Savvides 2020, Table 1"}
"""

import json
import math
import re
import statistics
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from zoo.atomic import atomic_write_bytes, atomic_write_text
from zoo.board_cells import (  # re-exported too: tests and zoo.reproduce read them as leaderboard's
    OLDER,
    commits_of,  # noqa: F401  (zoo.reproduce reads it here)
    cost_cells,
    cost_columns,
    from_cell,
    gain_cell,
    metric_cell,
    metric_names,
    render_csv,
)
from zoo.curves import curves_of, write_png
from zoo.curves import markdown as markdown_curves
from zoo.errors import ConfigError, RecordError
from zoo.paths import data_dir
from zoo.records import Record, git_commit, read_record

FROM_GIT = "from git"  # regenerate's default: the code commit of this checkout


def records_dir() -> Path:
    return data_dir("leaderboards") / "records"


def add(paths: list[Path]) -> list[Path]:
    """Copy run records (from run folders, record files or reproduce summaries) into leaderboards/records/."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.append(path / "record.json")
        elif path.name.startswith("reproduce-") and path.suffix == ".json":
            found += [Path(p) for p in json.loads(path.read_text())["records"]]
        else:
            found.append(path)
    records = [(source, read_record(source)) for source in found]  # every one validated before any is copied
    for source, record in records:
        if record.config.get("trainer", {}).get("fast_dev_run"):
            raise RecordError(f"{source}: a smoke run (trainer.fast_dev_run): its metrics cover a batch or two, "
                              "not a result", "add records of full runs only; nothing was copied")
        refuse_non_finite(record, source, "add records of runs that finished with finite metrics; nothing was copied")
    copied = []
    for source, record in records:  # whole files only: a half-copied record would stop every later regeneration
        target = records_dir() / f"{record.task}__{record.run_id}.json"
        atomic_write_bytes(target, source.read_bytes())
        copied.append(target)
        benches = sorted(source.parent.glob("bench-*.json"))  # written by `zoo bench run=...`; newest last
        if benches:
            bench_target = target.with_suffix(".bench.json")
            atomic_write_bytes(bench_target, benches[-1].read_bytes())
            copied.append(bench_target)
    return copied


def refuse_non_finite(record: Record, source: Path, hint: str) -> None:
    """A record whose metrics (its own or its teachers') are NaN or infinite is a diverged or damaged run, not a
    result, and its means and stds would break a board's rendering: a one-line RecordError naming it."""
    broken = sorted(name for block in (record.metrics, record.teacher_metrics) for name, value in block.items()
                    if not math.isfinite(value))
    if broken:
        raise RecordError(f"{source}: non-finite metric(s) {', '.join(broken)}", hint)


def onnx_latency_ms(task: str, run_id: str) -> float | None:
    """onnxruntime p50 latency at batch 1 from the run's `zoo bench` record, if it was benched."""
    path = records_dir() / f"{task}__{run_id}.bench.json"
    if not path.is_file():
        return None
    rows = [row for row in json.loads(path.read_text())["rows"] if row["batch"] == 1]
    return rows[0]["ort"]["p50_ms"] if rows else None


# --- what a record's method is and was taught by ---------------------------------------------------------------


def declared(method: str, attribute: str, default: Any) -> Any:
    """A class attribute the method declares for leaderboards, or ``default``, also for a record of a method this
    version no longer has."""
    from zoo.errors import UnknownNameError
    from zoo.registry import METHODS

    try:
        return getattr(METHODS.get(method), attribute, default)
    except UnknownNameError:
        return default


def ignored_settings(method: str) -> frozenset[str]:
    """Config keys the method class declares it ignores (``ignored_settings``, e.g. splade_ce's KL weights, kept
    only so that one override line serves every arm): they would make a row look like what it is not."""
    return frozenset(declared(method, "ignored_settings", ()))


def method_settings(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """The method block of a config without its name and the keys the method ignores, sorted by key."""
    hidden = {"name", *ignored_settings(method)}
    return {k: v for k, v in sorted(config.get("method", {}).items()) if k not in hidden}


def untrained(config: dict[str, Any]) -> bool:
    """Evaluated as it started (trainer.max_epochs=0), e.g. a zero-shot reference arm."""
    return config.get("trainer", {}).get("max_epochs") == 0


def teacher_label(record: Record) -> str:
    """The teachers of a record, with what the method used them for where it says (``teacher_use``): a dense
    baseline only trains on candidates its SPLADE teacher mined, and should not read as distilled from it."""
    names = " + ".join(t.name + (f" [{t.role}]" if t.role else "") for t in record.teachers)
    if not names:
        return "—"
    use = declared(record.method, "teacher_use", "")
    return f"{names} ({use})" if use else names


def method_label(record: Record) -> str:
    """The method and its settings, so that differently tuned runs are different rows."""
    settings = method_settings(record.method, record.config)
    label = record.method + (f" ({', '.join(f'{k}={v}' for k, v in settings.items())})" if settings else "")
    if untrained(record.config):
        label += " untrained (trainer.max_epochs=0)"
    return label


# --- the task: its YAML, arms, baseline and headline metric ---------------------------------------------------


def task_yaml(task: str) -> dict[str, Any] | None:
    """The task's YAML as written (no composition), or None for a task this version no longer has."""
    path = data_dir("tasks") / f"{task}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else None


@dataclass
class Arm:
    """One ``reproduce.arms`` entry and the config it composes to (without any user override)."""
    name: str
    own: list[str]           # the arm's own overrides
    config: dict[str, Any]   # resolved


def arms_of(task: str) -> list[Arm]:
    from zoo.arms import arm_overrides, arm_spec
    from zoo.config import compose

    raw = task_yaml(task)
    entries = ((raw or {}).get("reproduce") or {}).get("arms") or []
    arms = []
    for name, method, own, _ in map(arm_spec, entries):
        config = compose(task, arm_overrides(method, []) + own)
        arms.append(Arm(name, own, OmegaConf.to_container(config, resolve=True)))
    return arms


def defining_keys(arms: list[Arm]) -> list[str]:
    """The keys outside ``method`` that some arm of the task sets itself (teacher.arch, optim.lr, ...): runs that
    differ there are different variants, even with equal method settings."""
    from zoo.config import split_override

    keys = {split_override(text)[0].lstrip("+") for arm in arms for text in arm.own}
    return sorted(key for key in keys if key != "method" and not key.startswith("method."))


_MISSING = object()


def select(config: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a plain config dict, or _MISSING."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def matches(record: Record, arm: Arm, keys: list[str]) -> bool:
    """Whether a record is a run of this arm: the same method, equal method settings on every key both have (a
    key added to a method since keeps old records matching), the same value at each of the task's arm-defining
    keys the record has, and trained or not alike."""
    if record.method != arm.config["method"]["name"] or untrained(record.config) != untrained(arm.config):
        return False
    mine, theirs = method_settings(record.method, record.config), method_settings(record.method, arm.config)
    if any(mine[k] != theirs[k] for k in mine.keys() & theirs.keys()):
        return False
    return all(composed(record, k) in (_MISSING, select(arm.config, k)) for k in keys)


def composed(record: Record, key: str) -> Any:
    """The record's value at a dotted key as its task composed it: a searched student's arch was null (its search
    chose it; the config keeps the winner, which zoo eval and export build)."""
    return None if key == "student.arch" and record.search else select(record.config, key)


def baseline_arm(task: str) -> str | None:
    """The name of the task's ``reproduce.baseline`` arm, which the gain column compares with; None for records
    of a task this version no longer has."""
    raw = task_yaml(task)
    if raw is None:
        return None
    reproduce = raw.get("reproduce") or {}
    if "baseline" not in reproduce:
        raise ConfigError(f"tasks/{task}.yaml: reproduce.baseline is not set",
                          "name the arm every gain is measured against")
    return str(reproduce["baseline"])


def baseline_of(task: str) -> str | None:
    """The method the baseline arm runs (``ce`` for disco_mini's arm ce is ``splade_ce``)."""
    baseline = baseline_arm(task)
    for arm in ((task_yaml(task) or {}).get("reproduce") or {}).get("arms") or []:
        if isinstance(arm, dict) and arm.get("name", arm.get("method")) == baseline:
            return str(arm["method"])
    return baseline


def task_kind(task: str, records: list[Record]):
    """The task's kind, declared by the data module its config names (the task's YAML, else the records' config for
    a task this version no longer has)."""
    from zoo.config import compose, task_names
    from zoo.kinds import kind_of
    from zoo.registry import DATASETS

    data = compose(task).data.name if task in task_names() else records[0].config["data"]["name"]
    return kind_of(DATASETS.get(str(data)))


def headline_metric(task: str, records: list[Record]) -> str:
    """The test-split headline metric of the task's kind."""
    return task_kind(task, records).headline_metric


# --- rows -----------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a board: a measured variant, a teacher, or a paper's number."""
    variant: str
    source: str                                  # measured | paper
    metrics: dict[str, list[float]]              # metric -> one value per seed (a paper: the one it quotes)
    teacher: str
    student: str
    params: int | None
    flops: int | None
    settings: str                                # method and settings, listed once below the table
    records: list[Record] = field(default_factory=list)
    arm: str | None = None                       # the reproduce arm its records match
    method: str = ""
    citation: str = ""                           # paper rows
    gain: float | None = None
    latency_ms: float | None = None
    passes: float | None = None                  # teacher forward passes, mean over seeds
    queries: float | None = None                 # an active run's teacher queries (zoo.active), mean over seeds

    def mean(self, metric: str) -> float | None:
        values = self.metrics.get(metric, [])
        return statistics.fmean(values) if values and len(values) == max(len(self.records), 1) else None

    def std(self, metric: str) -> float | None:
        values = self.metrics.get(metric, [])
        return statistics.stdev(values) if len(values) > 1 else None


def teacher_rows(records: list[Record]) -> list[Row]:
    """The teachers themselves, as evaluated on the same test split inside the students' runs: the newest run's
    evaluation of each (a teacher retrained since, as after a fix, is the one today's rows learned from)."""
    seen: dict[str, Record] = {}
    for record in sorted(records, key=lambda r: r.created, reverse=True):
        if record.judged_teachers() and record.teacher_metrics:
            seen.setdefault(" + ".join(t.name for t in record.judged_teachers()), record)
    return [Row("teacher", "measured", {k: [v] for k, v in record.teacher_metrics.items() if k.startswith("test/")},
                "", name, sum(t.params for t in record.judged_teachers()),
                sum(t.flops or 0 for t in record.judged_teachers()) or None,
                "the teacher, evaluated inside the run of a student", [record])
            for name, record in sorted(seen.items())]


def extra_settings(record: Record, keys: list[str]) -> str:
    """The record's values at the task's arm-defining keys, e.g. ``optim.lr=2e-05, student.arch=dense.minilm``;
    no teacher.* key for a run without a teacher (a ce run's config still names the task's teacher)."""
    keys = [k for k in keys if record.teachers or not k.startswith("teacher.")]
    found = [(k, composed(record, k)) for k in keys]
    return ", ".join(f"{k}={v}" for k, v in found if v is not _MISSING)


def later_label(name: str, count: int, group: list[Record], taken: set[str]) -> str:
    """The name of a second (third, ...) row of one arm or method: ``name@<commit>`` when its runs were all made at
    one known commit (e.g. the records from before a fix, beside the arm's new ones), else ``name#<count>``."""
    commits = {record.git_commit for record in group}
    commit = next(iter(commits)) if len(commits) == 1 else None
    label = f"{name}@{commit[:7]}" if commit else f"{name}#{count}"
    return label if label not in taken else f"{name}#{count}"


def split_repeated_seeds(groups: dict[tuple, list[Record]]) -> dict[tuple, list[Record]]:
    """Each group's key with an age appended: 0, unless one seed repeats in it (a variant rerun at a later commit,
    e.g. after a fix that left its settings alone), then the group is split by commit, newest first (age 0, the
    plain name), so that no row counts one seed twice and the older runs keep a row labelled by their commit."""
    aged: dict[tuple, list[Record]] = {}
    for key, group in groups.items():
        seeds = [record.seed for record in group]
        if len(seeds) == len(set(seeds)):
            aged[(*key, 0)] = group
            continue
        by_commit: dict[str | None, list[Record]] = defaultdict(list)
        for record in group:
            by_commit[record.git_commit].append(record)
        newest_first = sorted(by_commit.values(), key=lambda part: max(r.created for r in part), reverse=True)
        aged.update({(*key, age): part for age, part in enumerate(newest_first)})
    return aged


def variants(task: str, records: list[Record]) -> list[Row]:
    """The measured rows: records grouped by arm, method settings, teachers and student, in the order of the
    task's arms (then the unmatched ones by name), each named after its arm or, failing one, its method."""
    arms = arms_of(task) if task_yaml(task) is not None else []
    keys = defining_keys(arms)
    order = {arm.name: i for i, arm in enumerate(arms)}
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for record in records:
        arm = next((a.name for a in arms if matches(record, a, keys)), None)
        name = arm or record.method + ("_untrained" if untrained(record.config) else "")
        settings = "; ".join(s for s in (method_label(record), extra_settings(record, keys)) if s)
        key = (arm is None, order.get(arm, 0), name, settings, teacher_label(record), record.student.name)
        groups[key].append(record)
    groups = split_repeated_seeds(groups)
    rows, seen, labels = [], defaultdict(int), set()
    for (unmatched, _, name, settings, teacher, student, _), group in sorted(groups.items()):
        seen[name] += 1
        label = name if seen[name] == 1 else later_label(name, seen[name], group, labels)
        labels.add(label)
        first = group[0]
        passes = statistics.fmean(r.teacher_queries.get("forward_passes", 0) for r in group)
        active = all("queries" in r.teacher_queries for r in group)
        latency = [ms for r in group if (ms := onnx_latency_ms(r.task, r.run_id)) is not None]
        metrics = {k: [r.metrics[k] for r in group if k in r.metrics]
                   for k in sorted({k for r in group for k in r.metrics if k.startswith("test/")})}
        rows.append(Row(label, "measured", metrics, teacher, student,
                        first.student.params, first.student.flops, settings, group,
                        arm=None if unmatched else name, method=first.method,
                        latency_ms=statistics.fmean(latency) if latency else None,
                        passes=passes if teacher != "—" and not active else None,
                        queries=statistics.fmean(r.teacher_queries["queries"] for r in group) if active else None))
    return rows


def add_gains(rows: list[Row], baseline: str | None, baseline_method: str | None, metric: str) -> None:
    """Each measured row's gain in mean ``metric`` over the baseline row of the same student: the row of the
    baseline arm, else (records that match no arm) of the baseline's method; none where a student has several. A
    baseline rerun at a later commit (``split_repeated_seeds``) has a row per commit: a row is compared with the one
    made at its own commits, else with the newest."""
    base = [r for r in rows if r.arm is not None and r.arm == baseline]
    if not base:
        base = [r for r in rows if r.arm is None and r.method == baseline_method]
    by_student: dict[str, list[Row]] = defaultdict(list)
    for row in base:
        by_student[row.student].append(row)
    for row in rows:
        found = by_student.get(row.student, [])
        if len(found) > 1 and baseline is not None:
            commits = {record.git_commit for record in row.records}
            found = ([b for b in found if commits & {record.git_commit for record in b.records}]
                     or [b for b in found if b.variant == baseline])
        mean = row.mean(metric)
        if len(found) == 1 and row is not found[0] and mean is not None and found[0].mean(metric) is not None:
            row.gain = mean - found[0].mean(metric)


def paper_rows(task: str) -> list[Row]:
    rows = []
    for entry in (task_yaml(task) or {}).get("paper") or []:
        rows.append(Row(str(entry.get("name", entry["method"])), "paper",
                        {k: [v] for k, v in sorted(entry.get("metrics", {}).items())},
                        str(entry.get("teacher", "")), str(entry["student"]), entry.get("params"),
                        int(entry["mflops"] * 1e6) if entry.get("mflops") else None, str(entry["method"]),
                        method=str(entry["method"]), citation=str(entry["source"])))
    return rows


# --- code commit: which rows come from older code ------------------------------------------------------------


def _checkout() -> Path | None:
    """The zoo's own git checkout; None where the zoo is installed, not checked out."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / ".git").exists() and (root / "pyproject.toml").is_file() else None


def _git(*args: str) -> subprocess.CompletedProcess | None:
    """git in the zoo's own checkout; None where the zoo is installed, not checked out."""
    root = _checkout()
    if root is None:
        return None
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None


def code_commit() -> str | None:
    """The last commit that changed the code and configs that make the numbers (``zoo.records.CODE_PATHS``): the
    commit records name (``zoo.records.git_commit``), shortened; None outside a git checkout (an installed zoo),
    where no row is marked."""
    root = _checkout()
    commit = git_commit(root) if root is not None else None
    return commit[:12] if commit else None


def is_older(commit: str | None, code: str | None) -> bool:
    """Whether a record made at ``commit`` predates the code commit: the code commit is not among its ancestors
    (or the record's commit is unknown here). Never, when there is no code commit to compare with."""
    if code is None:
        return False
    if commit is None:
        return True
    done = _git("merge-base", "--is-ancestor", code, commit)
    return done is None or done.returncode != 0


# --- rendering ------------------------------------------------------------------------------------------------


def notes(rows: list[Row]) -> list[str]:
    """The list under the table: each measured variant's full settings and records, each paper row's source."""
    lines = ["Settings and records of each row:", ""]
    for row in rows:
        if row.source == "paper":
            lines.append(f"- `{row.variant}` (paper, {row.student}): {row.citation}")
        elif row.variant == "teacher":
            lines.append(f"- `teacher` {row.student}: evaluated in run {row.records[0].run_id}")
        else:
            ids = ", ".join(sorted(r.run_id for r in row.records))
            lines.append(f"- `{row.variant}`: {row.settings}; runs {ids}")
    return lines


def render_markdown(task: str, rows: list[Row], metrics: list[str], gain_header: str, older: dict[int, bool],
                    code: str | None) -> str:
    baseline = baseline_arm(task) or "baseline"
    stamp = "code commit unknown (not a git checkout)"
    if code:
        stamp = (f"code commit `{code}`, the last commit that changed zoo/, tasks/ or pyproject.toml when this board "
                 f"was generated. {OLDER} on a row: its runs were made before that commit, so today's code may give "
                 f"other numbers (`zoo reproduce task={task}` judges)")
    header = ["variant", "source", *metrics, gain_header, *cost_columns(rows), "from"]
    lines = [f"# {task}", "",
             "Generated by `zoo leaderboard` from leaderboards/records/ and the task's `paper:` block; do not edit. "
             "A measured row is one variant (its `reproduce.arms` name, else its method) over seeds: mean ± sample "
             f"std of each test metric; paper rows quote the paper. {gain_header}: difference in mean {metrics[0]} "
             f"from the `{baseline}` row of the same student. MFLOPs: forward FLOPs per sample (torch "
             "FlopCounterMode); the teacher row gives the teacher's own size; onnx latency: onnxruntime p50 at "
             "batch 1 from `zoo bench` (CPU, see the run's bench record).", "",
             f"From: {stamp}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        cells = [row.variant, row.source, *(metric_cell(row, m) for m in metrics), gain_cell(row),
                 *cost_cells(row, ",", cost_columns(rows)), from_cell(row, older[i])]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines + [""] + notes(rows) + markdown_curves(curves_of(rows, metrics[0]), metrics[0], task)) + "\n"


def rows_of(task: str, records: list[Record]) -> tuple[list[Row], str]:
    """Every row of a task's board, in order (teachers, measured variants, paper), and its headline metric."""
    metric = headline_metric(task, records)
    measured = variants(task, records)
    add_gains(measured, baseline_arm(task), baseline_of(task), metric)
    return teacher_rows(records) + measured + paper_rows(task), metric


@dataclass
class Board:
    """One task's board, computed once and rendered as Markdown, CSV and a site page (``zoo.site``)."""
    task: str
    rows: list[Row]
    metrics: list[str]        # every test metric some row reports, the headline first
    gain_header: str          # "gain over <baseline arm>"
    older: dict[int, bool]    # row index -> its runs predate the code commit (†)
    code: str | None          # the code commit rows are marked against

    @property
    def headline(self) -> str:
        return self.metrics[0]

    @property
    def baseline(self) -> str | None:
        return baseline_arm(self.task)


def board_of(task: str, records: list[Record], code: str | None) -> Board:
    rows, metric = rows_of(task, records)
    commits = {r.git_commit for row in rows for r in row.records}
    older_commit = {c: is_older(c, code) for c in sorted(commits, key=str)}
    older = {i: any(older_commit[r.git_commit] for r in row.records) for i, row in enumerate(rows)}
    return Board(task, rows, metric_names(rows, metric), f"gain over {baseline_arm(task) or 'baseline'}", older, code)


def render(task: str, records: list[Record], code: str | None) -> tuple[str, str]:
    """The board's Markdown and CSV."""
    board = board_of(task, records, code)
    return (render_markdown(task, board.rows, board.metrics, board.gain_header, board.older, code),
            render_csv(board.rows, board.metrics, board.gain_header, board.older))


def stated_code_commit(markdown: str) -> str | None:
    """The code commit a generated board states in its header (to regenerate it as it was)."""
    found = re.search(r"^From: code commit `([0-9a-f]+)`", markdown, re.MULTILINE)
    return found.group(1) if found else None


def load_records() -> dict[str, list[Record]]:
    by_task: dict[str, list[Record]] = defaultdict(list)
    for path in sorted(records_dir().glob("*.json")):
        if path.name.endswith(".bench.json"):
            continue
        record = read_record(path)
        if path.name != f"{record.task}__{record.run_id}.json":
            raise RecordError(f"{path}: file name does not match its task and run id")
        refuse_non_finite(record, path, f"remove {path} (it predates the check at zoo leaderboard add); no board "
                                        "was written")
        by_task[record.task].append(record)
    return by_task


def regenerate(out_dir: Path | None = None, code: str | None = FROM_GIT) -> list[Path]:
    """Write <task>.md and <task>.csv for every task with records or paper rows, <task>.png for an active task's
    curves (``zoo.curves``), <task>_attention.png for ViT students' attention (``zoo.attention_distance``), and the
    static site under site/ (``zoo.site``); returns the paths. ``code`` is the
    code commit older rows are marked against: by default the checkout's (``code_commit``); a test gives the one a
    committed board states, to regenerate it as it was."""
    from zoo.attention_distance import write_board_png
    from zoo.config import task_names
    from zoo.site import write_site

    code = code_commit() if code == FROM_GIT else code
    out_dir = Path(out_dir) if out_dir else data_dir("leaderboards")
    by_task = load_records()
    written, boards = [], []
    for task in sorted(set(by_task) | {t for t in task_names() if paper_rows(t)}):
        board = board_of(task, by_task.get(task, []), code)
        boards.append(board)
        markdown = render_markdown(task, board.rows, board.metrics, board.gain_header, board.older, code)
        table = render_csv(board.rows, board.metrics, board.gain_header, board.older)
        for suffix, text in ((".md", markdown), (".csv", table)):
            atomic_write_text(out_dir / f"{task}{suffix}", text)
            written.append(out_dir / f"{task}{suffix}")
        if write_png(curves_of(board.rows, board.headline), board.headline, task, out_dir / f"{task}.png"):
            written.append(out_dir / f"{task}.png")  # an active task's curves, as a picture too
        if write_board_png(board.rows, task, out_dir / f"{task}_attention.png"):
            written.append(out_dir / f"{task}_attention.png")  # ViT students' attention (zoo.attention_distance)
    return written + write_site(boards, out_dir / "site")
