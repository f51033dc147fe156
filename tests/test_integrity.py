"""Issue 24's integrity probes: each damages an artefact the zoo wrote exactly as a disk, a crash or a careless edit
would (bytes flipped inside tensor data so that the file still loads, a cache row zeroed together with its checksum,
a garbled meta.json, a NaN loss) and checks the outcome: recomputed to the same result where the zoo can, else one
line and exit 2 with nothing lost. The leaderboard's probes live in test_leaderboard.py, the soft-label store's in
test_soft_label_store.py."""

import errno
import json
import os
import shutil
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from tests.helpers import QUICK
from tests.test_export import quick_digits_export, quick_digits_run
from tests.test_train import Interrupt, quiet, run_folder
from zoo.checkpoints import HashedCheckpointIO, sidecar_of, verify_checkpoint
from zoo.cli import main
from zoo.config import compose
from zoo.errors import ZooError
from zoo.recipes import sealed, stored_problem
from zoo.records import read_record
from zoo.train import train
from zoo.weights import sha256_file


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A finished kd_digits run (method ce) and its export, shared with test_export.py and test_runtime.py."""
    root = tmp_path_factory.mktemp("integrity_shared")
    return quick_digits_run(root), quick_digits_export(root)


def one_error_line(err: str) -> str:
    """The CLI's error line, once it is checked to be the whole message: ``error:`` and at most a ``hint:``."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[0].startswith("error: ") and len(lines) <= 2, err
    return lines[0]


def flip(raw: bytearray, start: int, count: int = 64) -> None:
    raw[start:start + count] = bytes(b ^ 0xFF for b in raw[start:start + count])


def flip_inside_checkpoint_tensor(path: Path) -> None:
    """Flip bytes in the middle of the largest tensor of a torch zip checkpoint: the zip and the pickle stay valid."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    at = info.header_offset  # the local header: 30 bytes, then the name and the extra field, then the data
    data = at + 30 + int.from_bytes(raw[at + 26:at + 28], "little") + int.from_bytes(raw[at + 28:at + 30], "little")
    flip(raw, data + info.file_size // 2)
    path.write_bytes(bytes(raw))


# ----------------------------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_flipped_inside_its_tensor_data_is_refused_and_kept(runs, capsys):
    overrides = QUICK + runs + ["method=ce", "run.id=flipped"]
    with pytest.raises(RuntimeError, match="simulated interruption"):
        train(compose("kd_digits", overrides), say=quiet, callbacks=[Interrupt(1, 2)])
    run_dir = run_folder(runs, "flipped")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert json.loads(sidecar_of(ckpt).read_text()) == {"file": "last.ckpt", "sha256": sha256_file(ckpt),
                                                       "size": ckpt.stat().st_size}
    flip_inside_checkpoint_tensor(ckpt)
    torch.load(ckpt, map_location="cpu", weights_only=False)  # still loads: only the hash can tell
    damaged, listing = ckpt.read_bytes(), sorted(p.name for p in run_dir.rglob("*"))

    assert main(["train", "task=kd_digits", *overrides]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "last.ckpt' does not match its sha256 in last.ckpt.sha256" in line
    assert ckpt.read_bytes() == damaged and sorted(p.name for p in run_dir.rglob("*")) == listing  # nothing changed


def fail_big_fsyncs(monkeypatch) -> None:
    """A disk that fills while a checkpoint (anything over 4 KiB) is flushed; the small sidecar still fits."""
    real = os.fsync

    def fsync(fd):
        if os.fstat(fd).st_size > 4096:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_failed_checkpoint_write_never_leaves_a_truncated_last_ckpt(tmp_path, monkeypatch):
    io_plugin, path = HashedCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    with monkeypatch.context() as patch:  # the very first checkpoint of a run: no last.ckpt at all
        fail_big_fsyncs(patch)
        with pytest.raises(OSError, match="No space left"):
            io_plugin.save_checkpoint({"weights": torch.arange(10_000.0)}, path)
    assert not path.exists() and not list(path.parent.glob(".*"))

    io_plugin.save_checkpoint({"weights": torch.arange(10_000.0)}, path)
    good = path.read_bytes()
    with monkeypatch.context() as patch:  # a later one: the previous checkpoint stays, whole and verified
        fail_big_fsyncs(patch)
        with pytest.raises(OSError, match="No space left"):
            io_plugin.save_checkpoint({"weights": torch.zeros(10_000)}, path)
    assert path.read_bytes() == good and not list(path.parent.glob(".*"))
    verify_checkpoint(path)  # the sidecar names the old file while the new one replaces it


class NaNInputs(L.Callback):
    """Turns every training batch from epoch ``epoch`` on into NaN, so the loss becomes NaN there."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch >= self.epoch:
            batch["inputs"].fill_(float("nan"))


def test_a_nan_loss_stops_the_run_and_it_resumes_from_the_last_good_epoch(runs):
    overrides = QUICK + runs + ["method=ce", "trainer.max_epochs=2"]
    reference = train(compose("kd_digits", overrides), say=quiet).record
    with pytest.raises(ZooError, match="the training loss became nan at epoch 1, batch 0"):
        train(compose("kd_digits", overrides + ["run.id=nan"]), say=quiet, callbacks=[NaNInputs(1)])
    run_dir = run_folder(runs, "nan")
    assert not (run_dir / "record.json").exists() and not (run_dir / "student.safetensors").exists()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    verify_checkpoint(ckpt)
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"] == 0  # the NaN epoch saved nothing

    resumed = train(compose("kd_digits", overrides + ["run.id=nan"]), say=quiet).record
    assert resumed.metrics["test/acc"] == pytest.approx(reference.metrics["test/acc"], abs=1e-9)
    assert resumed.metrics["test/loss"] == pytest.approx(reference.metrics["test/loss"], rel=1e-5)


# ----------------------------------------------------------------------------------------------- student weights
def test_flipped_student_weights_are_refused_by_every_command_that_reads_them(shared, tmp_path, capsys):
    from safetensors.torch import load_file

    run = tmp_path / "run"
    shutil.copytree(shared[0], run, ignore=shutil.ignore_patterns("export", "bench-*"))
    weights = run / "student.safetensors"
    assert read_record(run / "record.json").student.sha256 == sha256_file(weights)
    raw = bytearray(weights.read_bytes())
    flip(raw, len(raw) - 64)  # inside the last tensor's data
    weights.write_bytes(bytes(raw))
    load_file(weights)  # still a valid safetensors file
    commands = {"eval": [], "export": [f"out={tmp_path / 'out'}"], "publish": [f"to={tmp_path / 'mirror'}"],
                "bench": ["iters=2", "warmup=0", "batches=1"]}
    for command, extra in commands.items():
        assert main([command, f"run={run}", *extra]) == 2, command
        line = one_error_line(capsys.readouterr().err)
        assert f"student.safetensors' does not match its sha256 in {run / 'record.json'}" in line, command
    assert not (tmp_path / "out").exists() and not (tmp_path / "mirror").exists()
    assert not list(run.glob("bench-*"))


def test_a_record_from_before_the_sha256_is_still_read(shared, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(shared[0], run, ignore=shutil.ignore_patterns("export", "bench-*"))
    raw = json.loads((run / "record.json").read_text())
    del raw["student"]["sha256"]
    (run / "record.json").write_text(json.dumps(raw))
    assert main(["eval", f"run={run}"]) == 0
    assert f"test/acc: {raw['metrics']['test/acc']:.4f}" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- exports
def flip_inside_onnx_weights(path: Path) -> None:
    """Flip bytes in the middle of the largest initializer's raw data: the protobuf still parses and runs."""
    import onnx

    data = max((t.raw_data for t in onnx.load(path).graph.initializer), key=len)
    raw = bytearray(path.read_bytes())
    flip(raw, raw.find(data) + len(data) // 2, 32)
    path.write_bytes(bytes(raw))


def test_an_export_with_flipped_model_bytes_is_refused_before_it_serves(shared, tmp_path, capsys):
    import onnxruntime as ort

    folder = tmp_path / "export"
    shutil.copytree(shared[1], folder)
    digits = np.random.default_rng(0).integers(0, 17, (3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", digits)
    assert main(["infer", f"model={folder}", f"inputs={tmp_path / 'x.npy'}"]) == 0
    capsys.readouterr()
    flip_inside_onnx_weights(folder / "model.onnx")
    ort.InferenceSession(str(folder / "model.onnx"))  # it would load and answer, otherwise

    for argv in (["infer", f"model={folder}", f"inputs={tmp_path / 'x.npy'}"],
                 ["bench", f"model={folder}", "iters=2", "warmup=0", "batches=1"]):
        assert main(argv) == 2, argv[0]
        captured = capsys.readouterr()
        assert "model.onnx' does not match its sha256 in" in one_error_line(captured.err) and not captured.out


def test_an_export_card_quotes_what_the_export_measured_not_the_record(shared, tmp_path):
    """The record's numbers are not checked by the export (a changed val/acc would go straight onto the card)."""
    from zoo.export.dispatch import export_run

    run = tmp_path / "run"
    shutil.copytree(shared[0], run, ignore=shutil.ignore_patterns("export", "bench-*"))
    raw = json.loads((run / "record.json").read_text())
    raw["metrics"]["val/acc"] = 0.123456
    (run / "record.json").write_text(json.dumps(raw))
    report = export_run(run, tmp_path / "out", say=quiet).report
    card = yaml.safe_load((tmp_path / "out" / "card.yaml").read_text())
    parity = report["parity"]
    assert card["metrics"] == [{"name": "test/acc", "value": parity["metric_onnx"],
                                "source": f"export:onnx top-1 on {parity['samples']} test samples, profile default"}]
    assert report["source"]["record_metrics"]["val/acc"] == 0.123456  # kept in export.json, as the record said


# ----------------------------------------------------------------------------------------------- teacher store
@pytest.mark.own_teachers  # it damages the stored teacher
def test_a_garbled_stored_teacher_meta_is_retrained_with_a_note(runs, zoo_home):
    overrides = QUICK + runs + ["teacher.recipe.epochs=1", "trainer.max_epochs=1"]
    first = train(compose("kd_digits", overrides), say=quiet).record
    meta = next((zoo_home / "teachers").glob("*/meta.json"))
    meta.write_text('{"sha256": "0000", ')
    messages = []
    second = train(compose("kd_digits", overrides), say=messages.append).record
    assert any("meta.json is unreadable or does not match its own sha256; retraining it" in m for m in messages)
    assert any(m.startswith("training teacher convnet.base") for m in messages)
    assert stored_problem(meta.with_name("teacher.safetensors"), meta) is None  # stored again, whole
    assert second.teacher_metrics == first.teacher_metrics and second.metrics == first.metrics  # same recipe, seed


def test_stored_meta_must_match_its_own_sha256(tmp_path):
    weights, meta = tmp_path / "teacher.safetensors", tmp_path / "meta.json"
    weights.write_bytes(b"weights")
    content = {"key": {"arch": "x"}, "sha256": sha256_file(weights), "metrics": {"test/acc": 0.9}}
    meta.write_text(json.dumps(sealed(content)))
    assert stored_problem(weights, meta) is None
    meta.write_text(json.dumps(sealed(content)).replace("0.9", "0.99"))  # a metric changed after it was written
    assert "does not match its own sha256" in stored_problem(weights, meta)
    meta.write_text(json.dumps(content))  # from before meta_sha256: accepted, its weights still checked
    assert stored_problem(weights, meta) is None
    weights.write_bytes(b"\0" * 7)
    assert "does not match the sha256 in meta.json" in stored_problem(weights, meta)
    assert stored_problem(tmp_path / "none.safetensors", tmp_path / "none.json") == "absent"


# ----------------------------------------------------------------------------------------------- teacher cache
def test_cache_rows_zeroed_with_their_checksums_are_recomputed_to_the_same_result(runs, zoo_home):
    overrides = QUICK + runs + ["teacher.recipe.epochs=1", "trainer.max_epochs=2"]
    first = train(compose("kd_digits", overrides), say=quiet).record
    (cache,) = (zoo_home / "teacher_outputs").glob("*/meta.json")
    arrays = [cache.parent / f"{name}.npy" for name in json.loads(cache.read_text())["shapes"]]
    for path in [*arrays, cache.parent / "checksum.npy"]:  # zeroed as a disk or an editor would: data and checksum
        mapped = np.load(path, mmap_mode="r+")
        mapped[:50] = 0
        mapped.flush()
        del mapped

    second = train(compose("kd_digits", overrides), say=quiet).record
    assert second.metrics == first.metrics and second.teacher_metrics == first.teacher_metrics
    assert second.teacher_queries["cache_corrupt"] >= 50 and second.teacher_queries["forward_passes"] > 0
    assert all(np.load(path)[:50].any() for path in arrays)  # rewritten, so the damage does not stay


def test_a_stored_teachers_key_counts_paths_inside_zoo_home_from_zoo_home(tmp_path, monkeypatch):
    """A generated data set's tokenizer lives in ZOO_HOME (scene_vqa's): two homes sharing a teacher store (a test's
    and the ZOO_TEST_STORES one) must find the same file, and one stored under the earlier absolute key is found."""
    from types import SimpleNamespace

    from zoo.config import compose
    from zoo.recipes import locate, stored_at

    cfg, data = compose("kd_digits"), SimpleNamespace(fingerprint="f", splits={})

    def located(home: str):
        monkeypatch.setenv("ZOO_HOME", str(tmp_path / home))
        tokenizer = tmp_path / home / "data" / "scene_vqa" / "v1-abc" / "tokenizer"
        return locate(cfg, "mlp.tiny", cfg.teacher.recipe, data, kwargs={"tokenizer": str(tokenizer), "width": 3})

    first, second = located("a"), located("b")
    assert first.key == second.key and first.folder.name == second.folder.name
    assert second.key["kwargs"] == {"tokenizer": "$ZOO_HOME/data/scene_vqa/v1-abc/tokenizer", "width": 3}
    absolute = {"tokenizer": str(tmp_path / "b" / "data" / "scene_vqa" / "v1-abc" / "tokenizer"), "width": 3}
    earlier = stored_at("mlp.tiny", "teacher", {**second.key, "kwargs": absolute}, cfg, data)
    earlier.folder.mkdir(parents=True)
    earlier.weights.write_bytes(b"weights")
    (earlier.folder / "meta.json").write_text("{}")
    assert located("b").folder == earlier.folder != second.folder
