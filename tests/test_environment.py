"""The environment failing under a run, provoked as it happens to users: ZOO_HOME or run.root a plain file or
read-only, a read-only shared teacher store, a GPU the machine lacks, a full disk, a Hub that cannot be reached,
Ctrl-C while a teacher trains, out-of-range values, a run folder another process holds. Each is one ``error:`` line
with a hint and exit code 2 (130 for Ctrl-C), never a traceback, and loses nothing."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from tests.helpers import DETR_TINY, ROOT, SMOKE
from zoo.cli import main
from zoo.config import compose, to_yaml

KD_SMOKE = ["task=kd_digits", *SMOKE["image_classification"][1]]


def one_error(capsys, *needles: str) -> str:
    """stderr of the command just run: one ``error:`` line (and its hint), no traceback, each of ``needles`` in it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def read_only():
    """Makes folders read-only for the test: ``chattr +i`` as root (root ignores file modes), else mode 0555; undone
    afterwards so that pytest can clean up."""
    done = []

    def make(folder: Path) -> Path:
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
                pytest.skip("chattr +i is not available here")
            done.append(lambda: subprocess.run(["chattr", "-i", str(folder)], check=True))
        else:
            folder.chmod(0o555)
            done.append(lambda: folder.chmod(0o755))
        return folder

    yield make
    for undo in reversed(done):
        undo()


def test_zoo_home_that_is_a_plain_file(monkeypatch, tmp_path, capsys):
    home = tmp_path / "home"
    home.write_text("not a folder")
    monkeypatch.setenv("ZOO_HOME", str(home))
    assert main(["train", *KD_SMOKE, f"run.root={tmp_path / 'runs'}"]) == 2
    one_error(capsys, f"'{home}' is a file where a folder is needed", "teacher convnet.base is not in the store",
              "hint: set ZOO_HOME to a folder you can write")
    assert home.read_text() == "not a folder" and not (tmp_path / "runs").exists()


@pytest.mark.own_teachers  # its store must lack the teacher
def test_read_only_zoo_home(zoo_home, read_only, tmp_path, capsys):
    read_only(zoo_home)
    assert main(["train", *KD_SMOKE, f"run.root={tmp_path / 'runs'}"]) == 2
    one_error(capsys, "teacher convnet.base is not in the store", str(zoo_home / "teachers"), "set ZOO_HOME")
    assert not (tmp_path / "runs").exists()


@pytest.mark.own_teachers  # it makes its store read-only
def test_read_only_shared_teacher_store_serves_what_it_has(zoo_home, read_only, tmp_path, capsys):
    runs = f"run.root={tmp_path / 'runs'}"
    assert main(["train", *KD_SMOKE, runs]) == 0  # the teacher is stored
    store = zoo_home / "teachers"
    for lock in store.glob("*.lock"):
        lock.unlink()  # a store copied or mounted read-only has no lock file for the zoo to open
    read_only(store)
    capsys.readouterr()
    assert main(["train", *KD_SMOKE, runs]) == 0  # read without its lock
    assert "training teacher" not in capsys.readouterr().out
    assert main(["train", *KD_SMOKE, runs, "teacher.recipe.epochs=2"]) == 2  # a teacher it lacks
    one_error(capsys, "teacher convnet.base is not in the store", "cannot be trained into it", "set ZOO_HOME")


def test_run_root_that_is_a_plain_file_stops_before_the_teacher(tmp_path, capsys):
    root = tmp_path / "runs"
    root.write_text("not a folder")
    assert main(["train", *KD_SMOKE, f"run.root={root}"]) == 2
    err = one_error(capsys, f"'{root}' is a file where a folder is needed", "run.root=DIR")
    assert "training teacher" not in capsys.readouterr().out + err


def test_read_only_run_root(read_only, tmp_path, capsys):
    root = tmp_path / "runs"
    root.mkdir()
    read_only(root)
    assert main(["train", *KD_SMOKE, f"run.root={root}"]) == 2
    one_error(capsys, str(root), "run.root=DIR")
    assert not any(root.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_gpu_trainer_without_a_gpu_leaves_no_run_folder(tmp_path, capsys):
    for gpu in ("trainer=gpu", "trainer.accelerator=cuda"):
        assert main(["train", *KD_SMOKE, gpu, "method=ce", f"run.root={tmp_path / 'runs'}"]) == 2
        one_error(capsys, "CUDA GPU(s)", "sees 0", "hint: train on the CPU with trainer=cpu")
    assert not (tmp_path / "runs" / "kd_digits").exists() or not any((tmp_path / "runs" / "kd_digits").iterdir())


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the file being written through /proc")
def test_disk_full_while_writing_the_first_checkpoint(monkeypatch, tmp_path, capsys):
    """The disk fills while the first checkpoint is written (its bytes are in a temp file, fsync fails): one line
    naming last.ckpt and how to resume, and no checkpoint, whole or truncated, is left to resume from."""
    import zoo.atomic

    real_fsync = os.fsync

    def full_disk(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".last.ckpt."):  # atomic_write_bytes' temp file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(zoo.atomic.os, "fsync", full_disk)
    runs = tmp_path / "runs"
    assert main(["train", "task=kd_digits", "method=ce", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "trainer.enable_progress_bar=false", "run.id=full", f"run.root={runs}"]) == 2
    one_error(capsys, "no space left on the device of", "last.ckpt", "free space there",
              f"resume with: zoo train task=kd_digits run.id=full run.root={runs}")
    checkpoints = runs / "kd_digits" / "full" / "checkpoints"
    assert not checkpoints.exists() or not list(checkpoints.iterdir())  # no last.ckpt, no temp file
    assert (runs / "kd_digits" / "full" / "config.yaml").is_file()  # the run is there to resume


def test_pretrained_backbone_neither_cached_nor_downloadable(monkeypatch, tmp_path, capsys):
    """detr_kitti's backbone from timm with the Hub unreachable and an empty cache: one line naming the arch."""
    pytest.importorskip("transformers")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf_cache"))
    assert main(["train", "task=detr_kitti", *DETR_TINY, "teacher.kwargs.pretrained_backbone=true",
                 f"run.root={tmp_path / 'runs'}"]) == 2
    one_error(capsys, "the pretrained weights of deformable_detr.tiny are not in the local cache",
              "teacher.kwargs.pretrained_backbone=false")
    assert not (tmp_path / "runs").exists()


class CtrlC(L.Callback):
    """Ctrl-C a few batches into a fit: Lightning stops gracefully and exits, as it does on a real SIGINT."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 2:
            raise KeyboardInterrupt


@pytest.fixture
def restores_sigint():
    """Lightning ignores SIGINT after a Ctrl-C (against a second one during its shutdown): restore it."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.mark.own_teachers  # the teacher must be untrained
def test_ctrl_c_while_a_teacher_trains(monkeypatch, zoo_home, tmp_path, capsys, restores_sigint):
    import zoo.recipes

    real = zoo.recipes.recipe_trainer
    monkeypatch.setattr(zoo.recipes, "recipe_trainer",
                        lambda cfg, recipe, callbacks=None: real(cfg, recipe, [*(callbacks or []), CtrlC()]))
    assert main(["train", *KD_SMOKE, f"run.root={tmp_path / 'runs'}"]) == 130
    one_error(capsys, "training interrupted while teacher convnet.base trained by its recipe: nothing of it was stored",
              "hint: run the same command again")
    assert not list((zoo_home / "teachers").glob("*/*.safetensors")) and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override", ["data.batch_size=0", "optim.lr=-1", "trainer.max_epochs=-1", "seed=-1",
                                      "teacher.recipe.epochs=0", "teacher.recipe.optim.lr=-1"])
def test_values_out_of_range_are_refused_before_a_run_folder_exists(override, tmp_path, capsys):
    assert main(["train", "task=kd_digits", override, f"run.root={tmp_path / 'runs'}"]) == 2
    one_error(capsys, f"error: {override.split('=')[0]}=", "hint: set")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("seeds", ["0", "-1", "1.5", "many"])
def test_reproduce_refuses_seeds_that_are_not_a_positive_integer(seeds, tmp_path, capsys):
    assert main(["reproduce", "task=kd_digits", f"seeds={seeds}", f"run.root={tmp_path / 'runs'}"]) == 2
    one_error(capsys, "seeds must be an integer of at least 1", "hint:")
    assert not (tmp_path / "runs").exists()


def unfinished_run(runs: Path, run_id: str, overrides: list[str]) -> Path:
    """A run folder as ``zoo train`` leaves it before its first epoch ends: config.yaml alone."""
    cfg = compose("kd_digits", [*overrides, f"run.root={runs}", f"run.id={run_id}"])
    folder = runs / "kd_digits" / run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(to_yaml(cfg))
    return folder


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process (another terminal) holding ``folder``'s run lock, once it says so."""
    code = ("import sys, time; from pathlib import Path; from zoo.runs import lock_run_dir; "
            "lock_run_dir(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_run_folder_in_use_is_refused_naming_its_holder(tmp_path, capsys):
    runs = tmp_path / "runs"
    folder = unfinished_run(runs, "busy", ["method=ce", *SMOKE["image_classification"][1]])
    holder = hold_lock(folder)
    try:
        started = time.perf_counter()
        assert main(["train", "task=kd_digits", "run.id=busy", f"run.root={runs}"]) == 2
        one_error(capsys, f"run '{folder}' is in use by process {holder.pid}", "hint: wait for it to finish")
        assert time.perf_counter() - started < 30  # refused before data or teachers
        assert sorted(p.name for p in folder.iterdir()) == [".lock", ".lock-holder", "config.yaml"]  # untouched
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_process_that_died_does_not_block(tmp_path, capsys):
    runs = tmp_path / "runs"
    folder = unfinished_run(runs, "orphan", ["method=ce", *SMOKE["image_classification"][1]])
    holder = hold_lock(folder)
    holder.kill()  # SIGKILL: no clean-up; its .lock and .lock-holder stay behind
    holder.wait()
    assert (folder / ".lock-holder").is_file()
    assert main(["train", "task=kd_digits", "run.id=orphan", f"run.root={runs}"]) == 0
    assert (folder / "record.json").is_file() and not (folder / ".lock-holder").exists()


def test_time_left_is_said_once_as_an_estimate():
    from zoo.recipes import TimeLeft

    said = []
    estimate = TimeLeft("teacher convnet.base", said.append, after=0.0)
    estimate.on_train_start(None, None)
    trainer = SimpleNamespace(global_step=10, estimated_stepping_batches=1000)
    for _ in range(3):
        estimate.on_train_batch_end(trainer, None, None, None, 0)
    assert len(said) == 1 and said[0].startswith("teacher convnet.base: about ")
    assert "to go (an estimate from its first 10 of 1,000 steps)" in said[0]


@pytest.mark.own_teachers  # it watches what a cold store trains
def test_a_cold_fast_dev_run_says_what_it_trains_first_and_offers_a_smoke_teacher(zoo_home, tmp_path, capsys):
    from zoo.recipes import locate
    from zoo.registry import DATASETS

    runs = f"run.root={tmp_path / 'runs'}"
    smoke = ["task=kd_digits", "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false", runs]  # cold store
    assert main(["train", *smoke, "teacher.recipe.epochs=2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    said = out.index("trainer.fast_dev_run, but first the full recipe of what is not stored yet")
    assert said < out.index("training teacher convnet.base")  # up front
    assert "teacher convnet.base (2 epochs x 17 batches = 34 steps, on 1,078 examples)" in out
    assert "For smoke-sized ones instead, stored apart and used by fast_dev_run runs only: teacher.recipe.smoke=true" \
        in out

    assert main(["train", *smoke, "teacher.recipe.smoke=true"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "training teacher convnet.base (smoke-sized: 1 epoch of 2 batches" in out
    assert "first the full recipe" not in out
    # stored apart: the task's own recipe would never find it, and a real run may not ask for it
    cfg = compose("kd_digits", ["teacher.recipe.smoke=true"])
    data = DATASETS.get(cfg.data.name)(cfg.data)
    smoke_teacher = locate(cfg, "convnet.base", cfg.teacher.recipe, data)
    real = compose("kd_digits")
    assert smoke_teacher.stored and not locate(real, "convnet.base", real.teacher.recipe, data).stored
    assert main(["train", "task=kd_digits", "teacher.recipe.smoke=true", runs]) == 2
    one_error(capsys, "teacher.recipe.smoke=true trains a smoke-sized teacher: only a trainer.fast_dev_run run may",
              "hint: drop teacher.recipe.smoke for a real run")
