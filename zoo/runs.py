"""Run folders: made and reopened by ``zoo train``, read back by every other command.

    <run.root>/<task>/<run-id>/
        config.yaml          the resolved config, written before training starts (the truth on resume)
        checkpoints/last.ckpt  Lightning's resume point, rewritten at the end of every epoch
        checkpoints/last.ckpt.sha256  its sha256, checked before a resume (``zoo.checkpoints``)
        student.safetensors  the student alone, written at the end
        record.json          the run record (``zoo.records``, with the sha256 of student.safetensors), written last:
                             a folder with one has finished

``prepare_run_dir`` creates a folder, or reopens an unfinished one to resume it (its last.ckpt checked against its
sha256 first); ``load_run`` rebuilds a finished run's config, record, data module and student for ``zoo eval``,
``export``, ``bench``, ``publish``, ``index`` and ``search``, once student.safetensors matches the sha256 in
record.json.
"""

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.atomic import atomic_write_text
from zoo.config import to_yaml
from zoo.errors import ConfigError, RecordError
from zoo.records import Record, new_run_id, read_record


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: Any  # the run's DictConfig
    record: Record
    datamodule: Any
    student: Any  # nn.Module, weights loaded, eval mode


def quiet_lightning() -> None:
    """Lightning's INFO lines and the warnings it gives for every small CPU run are noise in the zoo's output."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r".*The number of training batches .* is smaller than the logging.*")
    # a stage on unlabelled text (zoo.staged) has no validation batches, on purpose
    warnings.filterwarnings("ignore", message=r".*Total length of `list` across ranks is zero.*")


def load_run_config(run_dir: Path) -> DictConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"no config.yaml in '{run_dir}'", "pass run=<a run folder written by zoo train>")
    cfg = OmegaConf.load(path)
    OmegaConf.set_struct(cfg, True)
    return cfg


def load_run(run_dir: Path) -> LoadedRun:
    """A finished run's config, record, data module and student (weights loaded, eval mode)."""
    from zoo.archs import create, student_arch_kwargs
    from zoo.registry import DATASETS
    from zoo.weights import load_weights

    quiet_lightning()
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if not (run_dir / "record.json").is_file():
        raise RecordError(f"run '{run_dir}' has no record.json: it has not finished",
                          f"finish it first: zoo train task={cfg.task} run.id={run_dir.name}")
    record = read_record(run_dir / "record.json")
    check_student_weights(run_dir, record)
    datamodule = DATASETS.get(cfg.data.name)(cfg.data)
    student = create(cfg.student.arch, datamodule.num_classes, datamodule.input_shape,
                     **student_arch_kwargs(cfg, datamodule))
    load_weights(student, run_dir / "student.safetensors")
    return LoadedRun(run_dir, cfg, record, datamodule, student.eval())


def check_student_weights(run_dir: Path, record: Record) -> None:
    """student.safetensors must be the file the run finished with: flipped weights still load, and every command
    would then report, export or publish another model under the record's name. A record from before the zoo wrote
    the sha256 (``student.sha256`` absent) is accepted as it is."""
    from zoo.digests import check_sha256

    if record.student.sha256 is not None:
        check_sha256(run_dir / "student.safetensors", record.student.sha256, f"{run_dir / 'record.json'}",
                     "nothing was read; restore the run folder's student.safetensors or train the run again")


def prepare_run_dir(cfg: DictConfig) -> tuple[Path, str | None]:
    """Create (or reopen, to resume) the run folder; returns it and the checkpoint to resume from."""
    # Lightning's DDP launcher re-runs this command in each extra rank: they must share the parent's id.
    spawned = "LOCAL_RANK" in os.environ and os.environ.get("ZOO_RUN_ID")
    # str(): Hydra reads run.id=123 as an int (and =nan as a float), which is still a folder name.
    given = None if cfg.run.id is None else str(cfg.run.id)
    run_id = given or (os.environ["ZOO_RUN_ID"] if spawned else new_run_id())
    os.environ["ZOO_RUN_ID"] = run_id
    run_dir = Path(cfg.run.root) / cfg.task / run_id
    config_path, last = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    if (run_dir / "record.json").exists():
        raise ConfigError(f"run '{run_dir}' has already finished", "leave run.id unset to start a new run")
    if config_path.exists():
        _check_same_config(OmegaConf.load(config_path), cfg, run_dir)
    elif not spawned:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_path, to_yaml(cfg))
    if not (cfg.run.resume and last.exists()):
        return run_dir, None
    _check_checkpoint(last)
    return run_dir, str(last)


def _check_same_config(saved: DictConfig, cfg: DictConfig, run_dir: Path) -> None:
    before = OmegaConf.to_container(saved, resolve=True)
    after = OmegaConf.to_container(cfg, resolve=True)
    for resolved in (before, after):  # where the run lives and how it displays may change on resume
        resolved.pop("run", None)
        resolved.get("trainer", {}).pop("enable_progress_bar", None)
    if before != after:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        raise ConfigError(f"run '{run_dir}' was started with a different config (differs in: {', '.join(changed)})",
                          "resume with the same overrides, or leave run.id unset to start a new run")


def _check_checkpoint(path: Path) -> None:
    """A resume point must be the file that was saved: its sha256 and a load are checked (``zoo.checkpoints``)."""
    from zoo.checkpoints import verify_checkpoint

    verify_checkpoint(path)
