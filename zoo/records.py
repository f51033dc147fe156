"""Run records: what one run did and measured, typed, validated, written atomically.

A record is the only source of a measured leaderboard row, so it carries
everything needed to judge the number: the resolved config, who taught whom,
parameter counts, metrics, seed, code version, package versions, hardware,
wall time per stage and how many times the teachers were run.
"""

import dataclasses
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from zoo.atomic import atomic_write_text
from zoo.errors import RecordError

SCHEMA_VERSION = 1
_TRACKED_PACKAGES = ("distill-zoo", "torch", "torchvision", "lightning", "timm", "numpy",
                     "hydra-core", "omegaconf", "torchmetrics", "safetensors", "scikit-learn",
                     "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu")


@dataclass
class ModelInfo:
    name: str          # registry key, e.g. "mlp.wide"
    params: int        # parameter count
    weights: str | None = None  # where the weights came from (file or cache key)
    flops: int | None = None    # forward FLOPs per sample (2 per multiply-add)
    role: str | None = None     # a staged run's teacher role (zoo.staged), e.g. "pretrained"; None elsewhere
    sha256: str | None = None   # the student's: student.safetensors as the run wrote it (None in older records)


@dataclass
class Record:
    task: str
    run_id: str
    method: str
    seed: int
    student: ModelInfo
    teachers: list[ModelInfo]
    metrics: dict[str, float]            # e.g. {"test/acc": 0.97}
    teacher_metrics: dict[str, float]    # metrics of the (first) teacher on the same split
    config: dict[str, Any]               # the resolved config
    teacher_queries: dict[str, int]      # forward passes and samples, online vs. cache
    wall_time_s: dict[str, float]        # per stage: teacher, fit, eval
    data: dict[str, Any]                 # dataset name, fingerprint, split sizes
    git_commit: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    schema: int = SCHEMA_VERSION
    stages: list[dict[str, Any]] = field(default_factory=list)  # a staged run's stages, in order (zoo.staged)
    rounds: list[dict[str, Any]] = field(default_factory=list)  # an active run's rounds, in order (zoo.active)
    search: dict[str, Any] = field(default_factory=dict)  # the search that chose the student (zoo.search.run)

    def judged_teachers(self) -> list[ModelInfo]:
        """The teachers whose test metrics are ``teacher_metrics``: all of them, except in a staged run, where it is
        the last stage's role (an earlier role's teacher may not even classify)."""
        if not self.stages:
            return list(self.teachers)
        last = self.stages[-1].get("teacher")
        roles = last if isinstance(last, list) else [last]  # a stage may have several teachers (zoo.staged)
        return [t for t in self.teachers if t.role in roles]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<record>") -> "Record":
        try:
            raw = dict(raw)
            raw["student"] = ModelInfo(**raw["student"])
            raw["teachers"] = [ModelInfo(**t) for t in raw["teachers"]]
            record = cls(**raw)
        except (KeyError, TypeError) as err:
            raise RecordError(f"{source}: not a valid run record ({err})") from err
        record.validate(source)
        return record

    def validate(self, source: str = "<record>") -> None:
        if self.schema != SCHEMA_VERSION:
            raise RecordError(f"{source}: record schema {self.schema}, this zoo reads {SCHEMA_VERSION}")
        for block in (self.metrics, self.teacher_metrics):
            for name, value in block.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise RecordError(f"{source}: metric '{name}' is not a number: {value!r}")
        if not isinstance(self.seed, int) or not self.task or not self.method:
            raise RecordError(f"{source}: task, method and an integer seed are required")


def write_record(record: Record, path: Path) -> Path:
    """Validate, then write via a temp file in the same folder and an atomic rename."""
    record.validate(str(path))
    atomic_write_text(Path(path), record.to_json() + "\n")
    return Path(path)


def read_record(path: Path) -> Record:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RecordError(f"no run record at '{path}'") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: corrupt run record ({err})") from err
    return Record.from_dict(raw, str(path))


def new_run_id() -> str:
    """Sorts by time to the microsecond, unique by a random tail: 20261128-093012-123456-4f2a."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f-") + os.urandom(2).hex()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


CODE_PATHS = ("zoo", "tasks", "pyproject.toml")  # what makes the numbers; a commit elsewhere changes none of them


def git_commit(root: Path | None = None) -> str | None:
    """The commit a run's numbers come from: the last commit that changed CODE_PATHS in the zoo's checkout (or in
    ``root``), not HEAD, so that a commit of docs or boards alone neither splits a board row's "runs at" nor stops
    ``zoo reproduce`` from reusing the runs before it. None outside a git checkout (an installed zoo)."""
    here = root or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "log", "-1", "--format=%H", "--", *CODE_PATHS],
                             capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.machine(),
                            "cpu_count": os.cpu_count()}
    try:
        import torch

        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info
