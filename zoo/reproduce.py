"""``zoo reproduce``: every arm of a task over N seeds, same data and budget, one record per run.

The arms (``reproduce.arms``, at least the baseline and the task's method) share the
teacher, which is trained once. An arm is a method option (``kd``) or a mapping
``{name: kd_single, method: kd, overrides: ["teacher.arch=[convnet.base]"]}``
for an arm that differs in more than its method (e.g. one teacher of an ensemble). The
arm's own overrides define it, so they win over the user's (with a note), and ``seeds: 1``
marks an arm that does not depend on the seed (an untrained reference): it runs once.
The result gives mean ± sample std per arm of the task kind's headline metric (``zoo.kinds``: test/acc,
test/map, test/mrr@10) and the gain over the baseline arm the task names (``reproduce.baseline``: ``ce``, or e.g.
``alone`` for a detector trained alone); ``reproduce.expected`` ranges turn it into OK / FAIL. Printing the table
is the command's job (``zoo.commands.reproduce``).
"""

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from zoo.atomic import atomic_write_text
from zoo.config import compose, group_options, split_override
from zoo.errors import ConfigError, did_you_mean
from zoo.records import now_iso


@dataclass
class ArmResult:
    name: str
    values: list[float]           # the metric of each run, in seed order
    expected: list[float] | None  # [low, high] for the mean, from reproduce.expected
    mean: float
    std: float

    @property
    def ok(self) -> bool:
        return self.expected is None or self.expected[0] <= self.mean <= self.expected[1]


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

    @property
    def all_ok(self) -> bool:
        return all(arm.ok for arm in self.arms)

    def gain(self, arm: ArmResult) -> float | None:
        """Mean difference from the baseline arm; None for the baseline itself or when it did not run."""
        base = next((a for a in self.arms if a.name == self.baseline), None)
        return None if base is None or arm is base else arm.mean - base.mean


def arm_spec(entry: Any) -> tuple[str, str, list[str], int | None]:
    """(label, method option, the arm's own overrides, its seed cap or None) of one ``reproduce.arms`` entry."""
    if isinstance(entry, str):
        return entry, entry, [], None
    unknown = set(entry) - {"name", "method", "overrides", "seeds"}
    if unknown or "method" not in entry:
        raise ConfigError(f"reproduce arm {dict(entry)} is not a method name or {{name, method, overrides, seeds}}",
                          f"unknown keys: {sorted(unknown)}" if unknown else "give the arm a 'method'")
    cap = entry.get("seeds")
    if cap is not None and int(cap) < 1:
        raise ConfigError(f"reproduce arm {entry.get('name', entry['method'])}: seeds must be at least 1, got {cap}")
    return (str(entry.get("name", entry["method"])), str(entry["method"]),
            [str(o) for o in entry.get("overrides", [])], None if cap is None else int(cap))


def shadowed(own: list[str], overrides: list[str]) -> list[str]:
    """The user's overrides whose key the arm sets itself (the arm's value is the one used), the last per key."""
    own_keys = {split_override(text)[0] for text in own}
    last = {split_override(text)[0]: text for text in overrides}
    return [text for key, text in last.items() if key in own_keys]


def arm_overrides(arm: str, overrides: list[str]) -> list[str]:
    """The user's overrides that apply to method ``arm``: method.* keys only where that method has them."""
    if arm not in group_options("method"):
        raise ConfigError(f"unknown arm '{arm}'", did_you_mean(arm, group_options("method"), "methods"))
    from zoo.paths import data_dir

    method_keys = set(OmegaConf.load(data_dir("tasks") / "method" / f"{arm}.yaml").keys())
    kept = []
    for text in overrides:
        key, _ = split_override(text)
        if key == "method" or (key.startswith("method.") and key.split(".", 1)[1].split(".")[0] not in method_keys):
            continue
        kept.append(text)
    return kept + [f"method={arm}"]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


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
    seeds = int(seeds or base.reproduce.seeds)
    metric = kind_of(DATASETS.get(base.data.name)).headline_metric
    scores: dict[str, list[float]] = {label: [] for label in labels}
    teacher_scores: dict[str, float] = {}
    records: list[str] = []
    for label, _, own, _ in arms:
        for text in shadowed(own, overrides):
            say(f"note: arm {label} sets {split_override(text)[0]} itself; {text} does not apply to it")
    for seed in range(seeds):
        for label, method, own, cap in arms:
            if cap is not None and seed >= cap:
                continue
            say(f"[bold]{task}[/bold]: arm {label}, seed {seed + 1}/{min(seeds, cap or seeds)}")
            cfg = compose(task, arm_overrides(method, overrides) + own + [f"seed={seed}"])
            result = train(cfg, say=say)
            scores[label].append(float(result.record.metrics[metric]))
            if result.record.teacher_metrics:
                teachers = " + ".join(t.name for t in result.record.teachers)
                teacher_scores.setdefault(teachers, float(result.record.teacher_metrics[metric]))
            records.append(str(result.run_dir / "record.json"))

    expected = OmegaConf.to_container(base.reproduce.expected, resolve=True) or {}
    results = [ArmResult(arm, scores[arm], expected.get(arm), *mean_std(scores[arm])) for arm in labels]
    out = Path(base.run.root) / task / f"reproduce-{now_iso().replace(':', '')}.json"
    summary = {arm.name: {"mean": arm.mean, "std": arm.std, "values": arm.values, "ok": arm.ok} for arm in results}
    atomic_write_text(out, json.dumps({"task": task, "metric": metric, "seeds": seeds,
                                       "baseline": str(base.reproduce.baseline), "arms": summary,
                                       "teacher": teacher_scores, "records": records}, indent=2))
    return ReproduceResult(task, metric, seeds, str(base.reproduce.baseline), results, teacher_scores, records, out)
