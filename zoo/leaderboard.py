"""Leaderboards: leaderboards/<task>.md and .csv, generated, never edited by hand.

Measured rows come from the run records in leaderboards/records/*.json (put
there by ``zoo leaderboard add=<run folder or reproduce summary>``); runs of the
same task, method settings, teachers and student are one row, with each metric's
mean ± sample std over their seeds. A run benched with ``zoo bench run=...`` before
it was added brings its bench record along (<task>__<run-id>.bench.json), which
fills the ONNX latency column. Paper rows come from the ``paper:`` block of
the task's YAML and say so. Output is deterministic: same records, same bytes.
The gain column compares with the task's baseline arm (``reproduce.baseline``)
on the headline metric of the task's kind (``zoo.kinds``: test/acc, test/map, ...).

A paper row in a task YAML looks like:

    paper:
      - {method: meal_v2, teacher: "senet154 + resnet152_v1s", student: resnet50,
         params: 25600000, metrics: {test/acc: 0.8067}, source: "Shen & Savvides 2020, Table 1"}
"""

import csv
import io
import json
import shutil
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from zoo.atomic import atomic_write_text
from zoo.errors import ConfigError, RecordError
from zoo.paths import data_dir
from zoo.records import Record, read_record

GAIN = "gain"  # the gain column's key in a row; its header names the baseline ("gain over ce")
COLUMNS = ("source", "method", "teacher", "student", "student params", "student MFLOPs", "seeds", "metrics",
           GAIN, "onnx latency ms", "teacher forward passes", "from")


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
    copied = []
    for source, record in records:
        target = records_dir() / f"{record.task}__{record.run_id}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied.append(target)
        benches = sorted(source.parent.glob("bench-*.json"))  # written by `zoo bench run=...`; newest last
        if benches:
            bench_target = target.with_suffix(".bench.json")
            shutil.copyfile(benches[-1], bench_target)
            copied.append(bench_target)
    return copied


def onnx_latency_ms(task: str, run_id: str) -> float | None:
    """onnxruntime p50 latency at batch 1 from the run's `zoo bench` record, if it was benched."""
    path = records_dir() / f"{task}__{run_id}.bench.json"
    if not path.is_file():
        return None
    rows = [row for row in json.loads(path.read_text())["rows"] if row["batch"] == 1]
    return rows[0]["ort"]["p50_ms"] if rows else None


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


def teacher_label(record: Record) -> str:
    """The teachers of a record, with what the method used them for where it says (``teacher_use``): a dense
    baseline only trains on candidates its SPLADE teacher mined, and should not read as distilled from it."""
    names = " + ".join(t.name for t in record.teachers)
    if not names:
        return "—"
    use = declared(record.method, "teacher_use", "")
    return f"{names} ({use})" if use else names


def method_label(record: Record) -> str:
    """The method and its settings, so that differently tuned runs are different rows."""
    hidden = {"name", *ignored_settings(record.method)}
    settings = {k: v for k, v in sorted(record.config.get("method", {}).items()) if k not in hidden}
    label = record.method + (f" ({', '.join(f'{k}={v}' for k, v in settings.items())})" if settings else "")
    if record.config.get("trainer", {}).get("max_epochs") == 0:  # evaluated as it started, e.g. a zero-shot arm
        label += " untrained (trainer.max_epochs=0)"
    return label


def _mflops(flops: int | None) -> str:
    return f"{flops / 1e6:.3g}" if flops else ""


def _fmt(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def baseline_of(task: str) -> str | None:
    """The method of the task's ``reproduce.baseline`` arm, which the gain column compares with; None for records
    of a task this version no longer has."""
    path = data_dir("tasks") / f"{task}.yaml"
    if not path.is_file():
        return None
    reproduce = OmegaConf.to_container(OmegaConf.load(path)).get("reproduce") or {}
    if "baseline" not in reproduce:
        raise ConfigError(f"{path}: reproduce.baseline is not set", "name the arm every gain is measured against")
    baseline = str(reproduce["baseline"])
    for arm in reproduce.get("arms") or []:
        if isinstance(arm, dict) and arm.get("name", arm.get("method")) == baseline:
            baseline = str(arm["method"])
    return baseline


def headline_metric(task: str, records: list[Record]) -> str:
    """The test-split headline metric of the task's kind, declared by the data module its config names (the
    task's YAML, else the records' config for a task this version no longer has)."""
    from zoo.config import compose, task_names
    from zoo.kinds import kind_of
    from zoo.registry import DATASETS

    data = compose(task).data.name if task in task_names() else records[0].config["data"]["name"]
    return kind_of(DATASETS.get(str(data))).headline_metric


def teacher_rows(records: list[Record]) -> list[dict[str, str]]:
    """The teachers themselves, as evaluated on the same test split inside the students' runs."""
    seen: dict[str, Record] = {}
    for record in records:
        if record.teachers and record.teacher_metrics:
            seen.setdefault(" + ".join(t.name for t in record.teachers), record)
    return [{"source": "measured", "method": "teacher", "teacher": "", "student": name,
             "student params": f"{sum(t.params for t in record.teachers):,}",
             "student MFLOPs": _mflops(sum(t.flops or 0 for t in record.teachers)), "seeds": "1",
             "metrics": "; ".join(f"{k} {v:.4f}" for k, v in sorted(record.teacher_metrics.items())
                                  if k.startswith("test/")),
             GAIN: "", "onnx latency ms": "", "teacher forward passes": "",
             "from": f"record:{record.run_id}"} for name, record in sorted(seen.items())]


def measured_rows(records: list[Record], baseline: str | None, metric: str) -> list[dict[str, str]]:
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for record in records:
        teacher = teacher_label(record)
        groups[(method_label(record), teacher, record.student.name)].append(record)
    # The baseline row of each student: the group of the baseline method (whatever its settings), when there is
    # exactly one (differently tuned baselines of one student would make the gain ambiguous).
    baselines: dict[str, list[list[Record]]] = defaultdict(list)
    for (_, _, student), group in groups.items():
        if group[0].method == baseline:
            baselines[student].append(group)
    baseline_means = {student: statistics.fmean(r.metrics[metric] for r in found[0])
                      for student, found in baselines.items() if len(found) == 1}
    rows = []
    for (label, teacher, student), group in sorted(groups.items()):
        names = sorted({k for r in group for k in r.metrics if k.startswith("test/")})
        metrics = "; ".join(f"{k} {_fmt([r.metrics[k] for r in group if k in r.metrics])}" for k in names)
        values = [r.metrics[metric] for r in group if metric in r.metrics]
        mean = statistics.fmean(values) if len(values) == len(group) else None
        is_baseline = group[0].method == baseline
        gain = ("" if is_baseline or mean is None or student not in baseline_means
                else f"{mean - baseline_means[student]:+.4f}")
        passes = statistics.fmean(r.teacher_queries.get("forward_passes", 0) for r in group)
        latency = [ms for r in group if (ms := onnx_latency_ms(r.task, r.run_id)) is not None]
        rows.append({"source": "measured", "method": label, "teacher": teacher, "student": student,
                     "student params": f"{group[0].student.params:,}",
                     "student MFLOPs": _mflops(group[0].student.flops), "seeds": str(len(group)),
                     "metrics": metrics, GAIN: gain,
                     "onnx latency ms": f"{statistics.fmean(latency):.3f}" if latency else "",
                     "teacher forward passes": f"{passes:.0f}" if teacher != "—" else "",
                     "from": " ".join(sorted(f"record:{r.run_id}" for r in group))})
    return rows


def paper_rows(task: str) -> list[dict[str, str]]:
    path = data_dir("tasks") / f"{task}.yaml"
    if not path.is_file():
        return []
    rows = []
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("paper") or []:
        metrics = "; ".join(f"{k} {v}" for k, v in sorted(entry.get("metrics", {}).items()))
        params = entry.get("params")
        rows.append({"source": "paper", "method": str(entry["method"]), "teacher": str(entry.get("teacher", "")),
                     "student": str(entry["student"]), "student params": f"{params:,}" if params else "",
                     "student MFLOPs": str(entry.get("mflops", "")),
                     "seeds": "", "metrics": metrics, GAIN: "", "onnx latency ms": "",
                     "teacher forward passes": "", "from": f"paper:{entry['source']}"})
    return rows


def render(task: str, rows: list[dict[str, str]], metric: str) -> tuple[str, str]:
    baseline = baseline_of(task) or "baseline"
    header = [f"gain over {baseline}" if c == GAIN else c for c in COLUMNS]
    table = [[row[c] for c in COLUMNS] for row in rows]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    lines = [f"# {task}", "",
             "Generated by `zoo leaderboard` from leaderboards/records/ and the task's `paper:` block; "
             f"do not edit. Metrics: mean ± sample std over seeds (measured rows); gain over {baseline}: "
             f"difference in mean {metric} from the `{baseline}` student of the same arch; MFLOPs: forward "
             "FLOPs per sample (torch FlopCounterMode); the teacher row gives the teacher's own size; "
             "onnx latency: onnxruntime p50 at batch 1 from `zoo bench` (CPU, see the run's bench record).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(values) + " |" for values in table]
    return "\n".join(lines) + "\n", out.getvalue()


def load_records() -> dict[str, list[Record]]:
    by_task: dict[str, list[Record]] = defaultdict(list)
    for path in sorted(records_dir().glob("*.json")):
        if path.name.endswith(".bench.json"):
            continue
        record = read_record(path)
        if path.name != f"{record.task}__{record.run_id}.json":
            raise RecordError(f"{path}: file name does not match its task and run id")
        by_task[record.task].append(record)
    return by_task


def regenerate(out_dir: Path | None = None) -> list[Path]:
    """Write <task>.md and <task>.csv for every task with records or paper rows; returns the paths."""
    from zoo.config import task_names

    out_dir = Path(out_dir) if out_dir else data_dir("leaderboards")
    by_task = load_records()
    written = []
    for task in sorted(set(by_task) | {t for t in task_names() if paper_rows(t)}):
        records = by_task.get(task, [])
        metric = headline_metric(task, records)
        rows = teacher_rows(records) + measured_rows(records, baseline_of(task), metric) + paper_rows(task)
        markdown, table = render(task, rows, metric)
        for suffix, text in ((".md", markdown), (".csv", table)):
            atomic_write_text(out_dir / f"{task}{suffix}", text)
            written.append(out_dir / f"{task}{suffix}")
    return written
