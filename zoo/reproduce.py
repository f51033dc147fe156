"""``zoo reproduce``: every arm of a task over N seeds, same data and budget, one record per run.

The arms (``reproduce.arms``, at least the baseline and the task's method) share the
teacher, which is trained once. An arm is a method option (``kd``) or a mapping
``{name: kd_single, method: kd, overrides: ["teacher.arch=[convnet.base]"]}``
for an arm that differs in more than its method (e.g. one teacher of an ensemble). The
arm's own overrides define it, so they win over the user's (with a note), and ``seeds: 1``
marks an arm that does not depend on the seed (an untrained reference): it runs once.
The result gives mean ± sample std per arm of the task kind's headline metric (``zoo.kinds``: test/acc,
test/map, test/mrr@10) and the gain over the baseline arm the task names (``reproduce.baseline``: ``ce``, or e.g.
``alone`` for a detector trained alone). Printing the table is the command's job (``zoo.commands.reproduce``).

Each arm gets a verdict against the task's own leaderboard, graded as pyserini grades its two-click
reproductions: OK when the mean lands within the board row's spread (its mean ± its sample std over seeds),
OKish within ``reproduce.tolerance`` (an absolute difference on the headline metric that the task states), FAIL
beyond both. The board row is the arm's row of ``leaderboards/<task>.md`` (``zoo.leaderboard.variants``), and
only if its runs had this reproduction's config but for the seed and where runs and data live (``IGNORED``): a
reproduction with other epochs is no check of the board. Where there is no such row (a task not on a board yet,
a changed recipe, quick overrides), the arm falls back to ``reproduce.expected``'s [low, high] range for its mean
(OK or FAIL), and without one it has no verdict.

A reproduction resumes where it stopped: each of its runs is first looked for among the task's run folders under
``run.root``. A finished run of the same config (but for ``NOT_THE_RUN``) made at the same code commit (the last
commit that changed the code, ``zoo.records.git_commit``: a docs-only commit since does not count) is read, not run
again; an unfinished one is resumed in its folder (``zoo.runs``); only the rest are trained. So an interrupted
``zoo reproduce`` is resumed by the same command.
"""

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from zoo.arms import arm_overrides, arm_spec, shadowed
from zoo.atomic import atomic_write_text
from zoo.config import compose, split_override
from zoo.errors import ConfigError, Interrupted
from zoo.records import Record, git_commit, now_iso, read_record

# Config keys that do not change what a run measures: a board row made with other values still applies.
IGNORED = ("seed", "task", "run", "reproduce", "paper", "data.root", "data.num_workers", "trainer.enable_progress_bar",
           "trainer.log_every_n_steps")
EPS = 1e-9  # a difference equal to the spread or tolerance as printed is within it, whatever the float rounding
# What an earlier run may differ in and still be this reproduction's run: where runs live, the reproduction's own
# settings, and how progress displays.
NOT_THE_RUN = ("run", "reproduce", "paper", "trainer.enable_progress_bar")


@dataclass
class Reference:
    """An arm's row on the task's leaderboard: what a reproduction of the arm is judged against."""
    mean: float
    std: float                    # sample std over the board's seeds (0 for one seed)
    seeds: int
    commits: list[str]            # the commits its runs were made at


def grade(mean: float, reference: Reference, tolerance: float | None) -> str:
    """OK within the board's spread, OKish within the task's tolerance, FAIL beyond both (pyserini's grades)."""
    difference = abs(mean - reference.mean)
    if difference <= reference.std + EPS:
        return "OK"
    if tolerance is not None and difference <= tolerance + EPS:
        return "OKish"
    return "FAIL"


@dataclass
class ArmResult:
    name: str
    values: list[float]           # the metric of each run, in seed order
    expected: list[float] | None  # [low, high] for the mean, from reproduce.expected (the fallback)
    mean: float
    std: float
    reference: Reference | None = None   # the board's row, when it is comparable
    tolerance: float | None = None       # reproduce.tolerance

    @property
    def judged_by(self) -> str | None:
        """board, expected, or None (no verdict)."""
        if self.reference is not None:
            return "board"
        return "expected" if self.expected is not None else None

    @property
    def verdict(self) -> str:
        if self.reference is not None:
            return grade(self.mean, self.reference, self.tolerance)
        if self.expected is not None:
            return "OK" if self.expected[0] <= self.mean <= self.expected[1] else "FAIL"
        return "—"

    @property
    def ok(self) -> bool:
        return self.verdict != "FAIL"


@dataclass
class ReproduceResult:
    task: str
    metric: str
    seeds: int
    baseline: str                  # the baseline arm's name
    arms: list[ArmResult]
    teachers: dict[str, float]     # teacher set -> its metric (an arm may use one teacher of an ensemble)
    records: list[str]             # every run's record.json
    summary: Path                  # the JSON summary written under run.root
    tolerance: float | None = None  # reproduce.tolerance, for OKish

    @property
    def all_ok(self) -> bool:
        return all(arm.ok for arm in self.arms)

    def gain(self, arm: ArmResult) -> float | None:
        """Mean difference from the baseline arm; None for the baseline itself or when it did not run."""
        base = next((a for a in self.arms if a.name == self.baseline), None)
        return None if base is None or arm is base else arm.mean - base.mean


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def tolerance_of(reproduce_block: Any) -> float | None:
    """``reproduce.tolerance``: None (not stated, no OKish) or a number at least 0."""
    value = reproduce_block.get("tolerance")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
        raise ConfigError(f"reproduce.tolerance must be a number at least 0, got {value!r}",
                          "the largest difference from the board's mean still graded OKish, e.g. 0.003")
    return None if value is None else float(value)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted key: leaf value}; lists are leaves."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differences(mine: dict[str, Any], theirs: dict[str, Any], ignored: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    """(key, mine, theirs) where two resolved configs disagree, on the keys both have (a key added since the
    older run was made is no difference) and outside ``ignored`` (keys or their prefixes)."""
    a, b = flatten(mine), flatten(theirs)
    skip = [(key, key + ".") for key in ignored]
    return [(k, a[k], b[k]) for k in sorted(a.keys() & b.keys())
            if a[k] != b[k] and not any(k == key or k.startswith(dotted) for key, dotted in skip)]


def board_references(task: str, configs: dict[str, dict[str, Any]], metric: str, say=print) -> dict[str, Reference]:
    """The board row of each arm whose runs had the arm's config here (``configs``: arm -> resolved config); a
    note for each arm that has a board row made with other settings."""
    from zoo import leaderboard

    records = leaderboard.load_records().get(task, [])
    rows = [row for row in leaderboard.variants(task, records) if row.arm in configs] if records else []
    found: dict[str, Reference] = {}
    for arm, config in configs.items():
        why = None  # why the arm's first board row is no reference
        for row in (r for r in rows if r.arm == arm):
            ignored = IGNORED + tuple(f"method.{k}" for k in leaderboard.ignored_settings(row.method))
            diffs = [d for r in row.records for d in differences(config, r.config, ignored)]
            if not diffs and len(row.metrics.get(metric, [])) == len(row.records):
                mean, std = mean_std(row.metrics[metric])
                found[arm] = Reference(mean, std, len(row.records), leaderboard.commits_of(row))
                break
            key, mine, theirs = diffs[0] if diffs else (None, None, None)
            why = why or (f"was run with {key}={theirs} (here {mine})" if diffs else f"lacks {metric} in some runs")
        if arm not in found and why is not None:
            say(f"note: arm {arm}: the leaderboard's row {why}, so it is no reference for this run "
                "(reproduce.expected judges it, where it gives a range)")
    return found


def reproduce(task: str, seeds: int | None, overrides: list[str], only: list[str] | None = None,
              say=print) -> ReproduceResult:
    """Every arm of ``task`` (or the arms named in ``only``) over ``seeds`` seeds, one record per run."""
    from zoo.kinds import kind_of
    from zoo.registry import DATASETS
    from zoo.train import train

    base = compose(task, overrides)
    arms = [arm_spec(entry) for entry in OmegaConf.to_container(base.reproduce.arms, resolve=True)]
    labels = [arm[0] for arm in arms]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"reproduce arms repeat a name: {labels}", "give each mapping arm its own 'name'")
    if only:
        unknown = [name for name in only if name not in labels]
        if unknown:
            raise ConfigError(f"task {task} has no arm {', '.join(unknown)}", f"its arms: {', '.join(labels)}")
        arms = [arm for arm in arms if arm[0] in only]
        labels = [arm[0] for arm in arms]
    seeds = int(base.reproduce.seeds if seeds is None else seeds)
    if seeds < 1:
        raise ConfigError(f"seeds={seeds}: a reproduction needs at least one seed",
                          f"seeds=N with N >= 1 (the task's default is {base.reproduce.seeds})")
    tolerance = tolerance_of(base.reproduce)  # checked before hours of training, not after
    metric = kind_of(DATASETS.get(base.data.name)).headline_metric
    scores: dict[str, list[float]] = {label: [] for label in labels}
    teacher_scores: dict[str, float] = {}
    records: list[str] = []
    configs: dict[str, dict[str, Any]] = {}  # each arm's resolved config, as its first seed ran it
    for label, _, own, _ in arms:
        for text in shadowed(own, overrides):
            say(f"note: arm {label} sets {split_override(text)[0]} itself; {text} does not apply to it")
    earlier, commit = earlier_runs(Path(base.run.root) / task), git_commit()
    for seed in range(seeds):
        for label, method, own, cap in arms:
            if cap is not None and seed >= cap:
                continue
            say(f"[bold]{task}[/bold]: arm {label}, seed {seed + 1}/{min(seeds, cap or seeds)}")
            cfg = compose(task, arm_overrides(method, overrides) + own + [f"seed={seed}"])
            configs.setdefault(label, OmegaConf.to_container(cfg, resolve=True))
            run_dir, record = run_or_reuse(cfg, earlier, commit, train, say)
            scores[label].append(float(record.metrics[metric]))
            if record.teacher_metrics:
                teachers = " + ".join(t.name for t in record.judged_teachers())
                teacher_scores.setdefault(teachers, float(record.teacher_metrics[metric]))
            records.append(str(run_dir / "record.json"))

    expected = OmegaConf.to_container(base.reproduce.expected, resolve=True) or {}
    references = board_references(task, configs, metric, say)
    results = [ArmResult(arm, scores[arm], expected.get(arm), *mean_std(scores[arm]), references.get(arm), tolerance)
               for arm in labels]
    out = Path(base.run.root) / task / f"reproduce-{now_iso().replace(':', '')}.json"
    summary = {arm.name: {"mean": arm.mean, "std": arm.std, "values": arm.values, "ok": arm.ok,
                          "verdict": arm.verdict, "judged_by": arm.judged_by,
                          "reference": asdict(arm.reference) if arm.reference else None}
               for arm in results}
    atomic_write_text(out, json.dumps({"task": task, "metric": metric, "seeds": seeds,
                                       "baseline": str(base.reproduce.baseline), "tolerance": tolerance,
                                       "arms": summary, "teacher": teacher_scores, "records": records}, indent=2))
    return ReproduceResult(task, metric, seeds, str(base.reproduce.baseline), results, teacher_scores, records, out,
                           tolerance)


def earlier_runs(folder: Path) -> dict[Path, dict[str, Any]]:
    """The run folders of one task (``run.root/<task>``) with their stored configs, newest first."""
    found = {}
    for path in sorted(folder.glob("*/config.yaml"), reverse=True):
        try:
            found[path.parent] = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        except Exception:  # noqa: BLE001 - a folder whose config cannot be read is no run to resume or reuse
            continue
    return found


def run_or_reuse(cfg: Any, earlier: dict[Path, dict[str, Any]], commit: str | None, train, say=print,
                 ) -> tuple[Path, Record]:
    """The run of ``cfg`` for this reproduction: an earlier finished run of the same config made at ``commit``, read;
    an earlier unfinished one, resumed; else a new one (``train``)."""
    mine = OmegaConf.to_container(cfg, resolve=True)
    run_dir = next((d for d, theirs in earlier.items() if not differences(mine, theirs, NOT_THE_RUN)), None)
    if run_dir is not None and (run_dir / "record.json").is_file():
        record = read_record(run_dir / "record.json")
        if record.git_commit == commit:
            say(f"finished earlier in {run_dir}: read, not run again")
            return run_dir, record
        say(f"note: {run_dir} ran this config at commit {record.git_commit}, this is {commit}: running it again")
    elif run_dir is not None:
        say(f"unfinished in {run_dir}: resuming it")
        cfg.run.id = run_dir.name
    try:
        result = train(cfg, say=say)
    except Interrupted as stop:  # the whole reproduction resumes, not only this run
        raise Interrupted(str(stop), "run the same zoo reproduce command again: the runs that finished are read, an "
                          "unfinished one resumes") from stop
    return result.run_dir, result.record
