"""End to end on real digits: teacher trained then reused, student distilled, run folder, resume."""

import json
from pathlib import Path

import lightning as L
import pytest

from tests.helpers import QUICK
from zoo.cli import main
from zoo.config import compose
from zoo.errors import CheckpointError, ConfigError
from zoo.records import read_record
from zoo.train import train
from zoo.weights import read_state_dict


def quiet(*_):
    pass


def run_folder(runs: list[str], run_id: str) -> Path:
    return Path(runs[0].split("=", 1)[1]) / "kd_digits" / run_id


@pytest.mark.own_teachers  # it watches the teacher being trained
def test_kd_digits_run_folder_record_and_teacher_reuse(runs, zoo_home):
    messages = []
    first = train(compose("kd_digits", QUICK + runs), say=messages.append)
    run_dir = first.run_dir
    assert {"config.yaml", "student.safetensors", "record.json"} <= {p.name for p in run_dir.iterdir()}
    record = read_record(run_dir / "record.json")
    assert record.method == "kd" and record.teachers[0].name == "convnet.base"
    assert record.student.params < record.teachers[0].params
    assert record.metrics["test/acc"] > 0.5 and record.teacher_metrics["test/acc"] > 0.5
    assert set(record.wall_time_s) == {"teachers", "fit", "eval", "total"}
    assert record.data["sizes"]["test"] == 449 and record.versions["torch"]
    # Student-only weights: no teacher tensor in the file.
    assert all(not k.startswith("teacher") for k in read_state_dict(run_dir / "student.safetensors"))
    # First run: teacher trained, its outputs computed once per training sample, then read from the cache.
    n_train = record.data["sizes"]["train"]
    assert record.teacher_queries["samples"] == n_train
    assert record.teacher_queries["cache_hits"] == 2 * n_train
    assert any("training teacher" in m for m in messages)
    # its metrics said once (on a loaded machine it is also told how long the teacher's training will take)
    assert sum(m.startswith("teacher convnet.base: test/") for m in messages) == 1

    messages.clear()
    second = train(compose("kd_digits", QUICK + runs + ["seed=1"]), say=messages.append)
    assert not any("training teacher" in m for m in messages)  # reused by config hash
    assert sum(m.startswith("teacher convnet.base: test/") for m in messages) == 1
    assert second.record.teacher_queries["forward_passes"] == 0  # warm cache: teacher never ran
    assert second.record.teacher_metrics == record.teacher_metrics
    assert second.run_dir.name > run_dir.name  # run ids sort by time


def test_zoo_eval_reproduces_the_record(runs, capsys):
    result = train(compose("kd_digits", QUICK + runs + ["method=ce"]), say=quiet)
    assert main(["eval", f"run={result.run_dir}"]) == 0
    out = capsys.readouterr().out
    assert f"test/acc: {result.record.metrics['test/acc']:.4f}" in out


class Interrupt(L.Callback):
    """Raises in the middle of epoch ``epoch``, as a crash or a kill would."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError("simulated interruption")


def test_interrupted_run_resumes_to_the_same_final_metrics(runs):
    overrides = QUICK + runs + ["trainer.max_epochs=4"]
    reference = train(compose("kd_digits", overrides), say=quiet).record

    with pytest.raises(RuntimeError, match="simulated interruption"):
        train(compose("kd_digits", overrides + ["run.id=interrupted"]), say=quiet, callbacks=[Interrupt(2, 5)])
    run_dir = run_folder(runs, "interrupted")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "record.json").exists()

    resumed = train(compose("kd_digits", overrides + ["run.id=interrupted"]), say=quiet).record
    assert resumed.metrics["test/acc"] == pytest.approx(reference.metrics["test/acc"], abs=1e-9)
    assert resumed.metrics["test/loss"] == pytest.approx(reference.metrics["test/loss"], rel=1e-5)


def test_finished_run_is_not_overwritten(runs):
    overrides = QUICK + runs + ["method=ce", "run.id=done"]
    train(compose("kd_digits", overrides), say=quiet)
    with pytest.raises(ConfigError, match="already finished"):
        train(compose("kd_digits", overrides), say=quiet)


def test_resume_with_other_config_is_refused(runs):
    with pytest.raises(RuntimeError):
        train(compose("kd_digits", QUICK + runs + ["method=ce", "run.id=r"]), say=quiet, callbacks=[Interrupt(1, 0)])
    with pytest.raises(ConfigError, match="different config"):
        train(compose("kd_digits", QUICK + runs + ["method=ce", "run.id=r", "optim.lr=0.5"]), say=quiet)


def test_corrupt_checkpoint_is_a_clear_error_and_is_kept(runs, capsys):
    overrides = QUICK + runs + ["method=ce", "run.id=broken"]
    with pytest.raises(RuntimeError):
        train(compose("kd_digits", overrides), say=quiet, callbacks=[Interrupt(1, 2)])
    ckpt = run_folder(runs, "broken") / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="does not match its sha256 in last.ckpt.sha256"):
        train(compose("kd_digits", overrides), say=quiet)
    assert ckpt.stat().st_size == 1000  # nothing deleted
    (ckpt.parent / "last.ckpt.sha256").unlink()  # as a checkpoint from before the sidecar: loading it tells
    assert main(["train", "task=kd_digits", *overrides]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_corrupt_student_weights_fail_eval_clearly(runs, capsys):
    result = train(compose("kd_digits", QUICK + runs + ["method=ce"]), say=quiet)
    weights = result.run_dir / "student.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    assert main(["eval", f"run={result.run_dir}"]) == 2
    assert "student.safetensors' does not match its sha256 in" in capsys.readouterr().err


@pytest.mark.own_teachers  # it watches the teacher being trained
def test_corrupt_stored_teacher_is_retrained(runs, zoo_home):
    train(compose("kd_digits", QUICK + runs), say=quiet)
    stored = next((zoo_home / "teachers").glob("*/teacher.safetensors"))
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    messages = []
    train(compose("kd_digits", QUICK + runs), say=messages.append)
    assert any("training teacher" in m for m in messages)
    assert json.loads((stored.parent / "meta.json").read_text())["sha256"]


def test_a_diverging_run_stops_with_one_line_and_leaves_no_record(runs, tmp_path, capsys):
    """lr 1e30 makes the loss NaN within the first batches: the run stops there (exit 2), the last checkpoint is
    not overwritten by a NaN epoch, and no record exists that a leaderboard could take."""
    code = main(["train", "task=kd_digits", "method=ce", "optim.lr=1e30", "trainer.max_epochs=2", "run.id=404",
                 "trainer.enable_progress_bar=false", *runs])
    err = capsys.readouterr().err
    assert code == 2 and "the training loss became nan at epoch 0" in err and "Traceback" not in err
    run_dir = tmp_path / "runs" / "kd_digits" / "404"  # a number as id: Hydra gives an int, still a folder
    assert run_dir.is_dir() and not (run_dir / "record.json").exists()
    assert not (run_dir / "student.safetensors").exists()


def test_an_unfinished_run_resumes_by_its_id_alone_with_its_stored_config(runs, capsys):
    """Started with overrides and stopped by a crash, the run resumes by `zoo train task=T run.id=ID`, its
    config.yaml deciding; an override that repeats a stored value is fine, one that contradicts it is refused by
    name; `zoo train run=RUN_DIR` is the same resume."""
    overrides = ["method=ce", "optim.lr=0.02", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train(compose("kd_digits", overrides + runs + ["run.id=alone"]), say=quiet, callbacks=[Interrupt(1, 2)])
    run_dir = run_folder(runs, "alone")
    assert main(["train", "task=kd_digits", "run.id=alone", *runs, "optim.lr=0.5", "trainer.max_epochs=9"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr=0.5 (started with 0.02), trainer.max_epochs=9 (started with 2)" in err and "Traceback" not in err
    assert not (run_dir / "record.json").exists()
    assert main(["train", "task=kd_digits", "run.id=alone", *runs, "optim.lr=0.02"]) == 0
    record = read_record(run_dir / "record.json")
    assert record.config["method"]["name"] == "ce" and record.config["trainer"]["max_epochs"] == 2
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["version_0", "version_1"]  # resumed, not new

    with pytest.raises(RuntimeError, match="simulated interruption"):
        train(compose("kd_digits", overrides + runs + ["run.id=by_folder"]), say=quiet, callbacks=[Interrupt(1, 0)])
    assert main(["train", f"run={run_folder(runs, 'by_folder')}"]) == 0
    assert read_record(run_folder(runs, "by_folder") / "record.json").config["optim"]["lr"] == 0.02
    assert main(["train", "task=kd_digits", f"run={run_dir}"]) == 2
    assert "takes exactly one of task= or run=" in capsys.readouterr().err


class CtrlC(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 3:
            raise KeyboardInterrupt


def test_the_resume_command_said_after_ctrl_c_resumes(runs, capsys):
    """Ctrl-C in the student's fit: exit 130, what was kept, and a resume command that works as printed."""
    import signal

    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a Ctrl-C: restore it
    from zoo.errors import Interrupted

    overrides = ["method=ce", "optim.lr=0.02", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
    try:
        with pytest.raises(Interrupted) as stop:
            train(compose("kd_digits", overrides + runs + ["run.id=ctrl_c"]), say=quiet, callbacks=[CtrlC()])
    finally:
        signal.signal(signal.SIGINT, handler)
    assert "the last finished epoch is saved in" in str(stop.value)
    command = stop.value.hint.removeprefix("resume with: ").split()
    assert command[:2] == ["zoo", "train"] and "optim.lr=0.02" not in command
    assert main(command[1:]) == 0
    assert read_record(run_folder(runs, "ctrl_c") / "record.json").config["optim"]["lr"] == 0.02
