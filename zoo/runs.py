"""Run folders: made and reopened by ``zoo train``, read back by every other command.

    <run.root>/<task>/<run-id>/
        config.yaml          the resolved config, written before training starts (the truth on resume)
        checkpoints/last.ckpt  Lightning's resume point, rewritten at the end of every epoch
        checkpoints/last.ckpt.sha256  its sha256, checked before a resume (``zoo.checkpoints``)
        student.safetensors  the student alone, written at the end
        record.json          the run record (``zoo.records``, with the sha256 of student.safetensors), written last:
                             a folder with one has finished
        .lock, .lock-holder  held while a process trains in the folder; who holds it (pid, host, since when)

``run_config`` is the config ``zoo train`` runs: the task's, or for a run that exists already its stored config.yaml
(so ``zoo train task=T run.id=ID``, or ``zoo train run=RUN_DIR``, resumes without repeating the run's overrides);
``prepare_run_dir`` creates a folder, or reopens an unfinished one to resume it (its last.ckpt checked against its
sha256 first), and locks it for this process (a second process on the same folder is a one-line error naming the
holder; a holder that died holds nothing); ``load_run`` rebuilds a finished run's config, record, data module and
student for ``zoo eval``, ``export``, ``bench``, ``publish``, ``index`` and ``search``, once student.safetensors
matches the sha256 in record.json.
"""

import contextlib
import errno
import json
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from zoo.atomic import atomic_write_text
from zoo.config import compose, split_override, to_yaml
from zoo.errors import ConfigError, RecordError
from zoo.records import Record, new_run_id, now_iso, read_record

DEFAULT_ROOT = "runs"  # every task's run.root
# What a resume may set to other values than the run started with: where the run lives and how it displays.
MAY_DIFFER_ON_RESUME = ("run", "trainer.enable_progress_bar")
LOCK, HOLDER = ".lock", ".lock-holder"
_HELD: list = []  # (lock, run folder) of the folders this process trains in, until ``run_locks`` lets them go


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
    # a frozen part of a student (a vision-language model's tower, zoo.archs.vlm) stays in eval mode, on purpose
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    # a label-free recipe (mae) has no validation step, and its recipe Trainer runs no validation anyway
    warnings.filterwarnings("ignore", message=r".*You passed in a `val_dataloader` but have no `validation_step`.*")


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
                          f"finish it first: zoo train run={run_dir}")
    record = read_record(run_dir / "record.json")
    check_student_weights(run_dir, record)
    datamodule = DATASETS.get(cfg.data.name)(cfg.data)
    student = create(cfg.student.arch, datamodule.num_classes, datamodule.input_shape,
                     **student_arch_kwargs(cfg, datamodule))
    if cfg.get("stages"):  # a staged run's transform stages changed the student's structure
        from zoo.transforms import transformed_student

        transformed_student(cfg, student)
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
def run_config(task: str | None, overrides: list[str], run: str | Path | None = None) -> DictConfig:
    """The config ``zoo train`` runs: ``task`` composed with ``overrides``; but for a run that exists already, named
    by ``run.id`` (or by its folder, ``run``), the config.yaml it was started with, which decides. An override that
    repeats a stored value is fine; one that differs is refused by name (``MAY_DIFFER_ON_RESUME`` aside)."""
    overrides = list(overrides)
    if run is not None:
        run_dir = Path(run)
        task = str(load_run_config(run_dir).task)
        if run_dir.parent.name != task:
            raise ConfigError(f"'{run_dir}' is not in a folder named after its task ({task})",
                              f"zoo train finds runs as RUN_ROOT/{task}/RUN_ID: move it there")
        overrides += [f"run.root={run_dir.parent.parent}", f"run.id={run_dir.name}"]
    cfg = compose(task, overrides)
    if cfg.run.id is None:
        return cfg
    run_dir = Path(cfg.run.root) / cfg.task / str(cfg.run.id)
    if not (run_dir / "config.yaml").is_file():
        return cfg  # a new run with an id of the user's choosing
    return _resumed(load_run_config(run_dir), cfg, overrides, run_dir)


def _resumed(stored: DictConfig, cfg: DictConfig, overrides: list[str], run_dir: Path) -> DictConfig:
    """``stored`` with where the run lives (and how it displays) taken from ``cfg``, once no override contradicts it."""
    given = [split_override(text)[0].lstrip("+") for text in overrides]
    may_differ = [key for key in given if _among(key, MAY_DIFFER_ON_RESUME)]
    conflicts = [f"{key}={_plain(cfg, key)!r} (started with {_plain(stored, key)!r})" for key in dict.fromkeys(given)
                 if key not in may_differ and _plain(cfg, key) != _plain(stored, key)]
    if conflicts:
        raise ConfigError(f"run '{run_dir}' was started with other values: {', '.join(conflicts)}",
                          f"leave them out to resume with the config the run started with "
                          f"({run_dir / 'config.yaml'}), or leave run.id unset to start a new run")
    for key in dict.fromkeys(["run", *may_differ]):
        OmegaConf.update(stored, key, OmegaConf.select(cfg, key), merge=False, force_add=True)
    return stored


def _among(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def _plain(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def check_accelerator(cfg: DictConfig) -> None:
    """A CUDA accelerator (``trainer=gpu``) on a machine without one is a one-line error before the first thing that
    needs it (teachers, a recipe, the run's folder), not Lightning's traceback at its first Trainer."""
    import torch

    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator not in ("gpu", "cuda"):
        return
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    devices = cfg.trainer.get("devices", 1)
    wanted = devices if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0 else 1
    if found < wanted:
        build = "" if torch.version.cuda else ", a build without CUDA"
        raise ConfigError(f"trainer.accelerator={accelerator} asks for {wanted} CUDA GPU(s); torch "
                          f"{torch.__version__}{build} sees {found} on this machine",
                          "train on the CPU with trainer=cpu (fp32; slower for the GPU tasks), or run where "
                          "nvidia-smi lists a GPU")


def check_writable(folder: Path) -> None:
    """Raise the OSError that making ``folder`` would, before hours of teacher training rather than after: its
    nearest existing ancestor must be a folder this process may write (the CLI words it, ``zoo.errors``). A folder
    made read-only with ``chattr +i`` passes for root, and fails, in the same words, when it is written."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))


def resume_hint(cfg: DictConfig, run_dir: Path) -> str:
    """The command that resumes ``run_dir``: its id is enough, the stored config decides (``run_config``)."""
    root = "" if str(cfg.run.root) == DEFAULT_ROOT else f" run.root={cfg.run.root}"
    return f"resume with: zoo train task={cfg.task} run.id={run_dir.name}{root}"


def prepare_run_dir(cfg: DictConfig) -> tuple[Path, str | None]:
    """Create (or reopen, to resume) the run folder and lock it for this process; returns it and the checkpoint to
    resume from. A GPU the machine lacks is refused first, so that no folder is left behind for it."""
    check_accelerator(cfg)
    # Lightning's DDP launcher re-runs this command in each extra rank: they must share the parent's id (and lock).
    spawned = _spawned()
    # str(): Hydra reads run.id=123 as an int (and =nan as a float), which is still a folder name.
    given = None if cfg.run.id is None else str(cfg.run.id)
    run_id = given or (os.environ["ZOO_RUN_ID"] if spawned else new_run_id())
    os.environ["ZOO_RUN_ID"] = run_id
    run_dir = Path(cfg.run.root) / cfg.task / run_id
    config_path, last = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    _refuse_finished(run_dir)
    if not spawned:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)
        _refuse_finished(run_dir)  # again, now that no other process can be finishing it
    if config_path.exists():
        _check_same_config(OmegaConf.load(config_path), cfg, run_dir)
    elif not spawned:
        atomic_write_text(config_path, to_yaml(cfg))
    if not (cfg.run.resume and last.exists()):
        return run_dir, None
    _check_checkpoint(last)
    return run_dir, str(last)


def lock_existing_run(cfg: DictConfig) -> None:
    """Lock the folder of a run that is being resumed (``run.id`` of a folder that exists) before its data and
    teachers are prepared, so that a second process on it (or on a finished run) learns it at once."""
    if cfg.run.id is None or _spawned():
        return
    run_dir = Path(cfg.run.root) / cfg.task / str(cfg.run.id)
    _refuse_finished(run_dir)
    if (run_dir / "config.yaml").is_file():
        lock_run_dir(run_dir)


def _spawned() -> bool:
    """Whether this process is an extra rank that Lightning's DDP launcher started (it shares its parent's run)."""
    return "LOCAL_RANK" in os.environ and bool(os.environ.get("ZOO_RUN_ID"))


def _refuse_finished(run_dir: Path) -> None:
    if (run_dir / "record.json").exists():
        raise ConfigError(f"run '{run_dir}' has already finished", "leave run.id unset to start a new run")


def lock_run_dir(run_dir: Path) -> None:
    """Hold ``run_dir``'s lock until ``run_locks`` lets it go (or the process ends); another process holding it is
    a one-line error naming that process. The lock is the operating system's (``filelock``: flock), so a process that
    died holds nothing; ``.lock-holder`` says who holds it."""
    from filelock import FileLock, Timeout

    if any(held == run_dir for _, held in _HELD):  # locked already by this process (``lock_existing_run``)
        return
    lock = FileLock(str(run_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(f"run '{run_dir}' is in use by {_holder(run_dir)}",
                          "wait for it to finish (or stop it), or leave run.id unset to start a new run") from None
    atomic_write_text(run_dir / HOLDER, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                    "since": now_iso()}))
    _HELD.append((lock, run_dir))


def _holder(run_dir: Path) -> str:
    try:
        holder = json.loads((run_dir / HOLDER).read_text())
        return f"process {holder['pid']} on {holder['host']} (since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def run_locks() -> Iterator[None]:
    """Lets go of the run-folder locks taken inside the block (``zoo.train.train``: the length of one run), so that
    a process that trains several runs (reproduce, tests) holds each only while it trains."""
    held = len(_HELD)
    try:
        yield
    finally:
        while len(_HELD) > held:
            lock, run_dir = _HELD.pop()
            with contextlib.suppress(OSError):  # a folder made read-only meanwhile still lets its lock go
                (run_dir / HOLDER).unlink(missing_ok=True)
            lock.release()


def _check_same_config(saved: DictConfig, cfg: DictConfig, run_dir: Path) -> None:
    before = OmegaConf.to_container(saved, resolve=True)
    after = OmegaConf.to_container(cfg, resolve=True)
    for resolved in (before, after):  # where the run lives and how it displays may change on resume
        resolved.pop("run", None)
        resolved.get("trainer", {}).pop("enable_progress_bar", None)
    if before != after:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        raise ConfigError(f"run '{run_dir}' was started with a different config (differs in: {', '.join(changed)})",
                          "resume by its id alone (zoo train task=... run.id=...): its stored config.yaml decides; "
                          "or leave run.id unset to start a new run")


def _check_checkpoint(path: Path) -> None:
    """A resume point must be the file that was saved: its sha256 and a load are checked (``zoo.checkpoints``)."""
    from zoo.checkpoints import verify_checkpoint

    verify_checkpoint(path)
