"""zoo export on a quick real kd_digits run: a complete checked folder, loud failures, fp16, strict profiles, bench.

One run is trained per session (task kd_digits with method=ce, so no teacher has
to be trained first: the export only needs a finished run folder, however its
student was taught) and exported once; tests/test_runtime.py reuses both.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

from tests.helpers import QUICK
from zoo.atomic import WRITTEN
from zoo.cards import parse_card
from zoo.cli import main
from zoo.config import compose
from zoo.errors import ConfigError, UnknownNameError
from zoo.export import classifier
from zoo.export.bench import bench_folder, format_table
from zoo.export.classifier import check_graph, export_any, held_out_batches
from zoo.export.dispatch import export_run
from zoo.export.errors import ExportCheckError
from zoo.export.parity import check_parity, violations
from zoo.export.profiles import load_profile, parse_profile, profile_names
from zoo.records import read_record
from zoo.runs import load_run
from zoo.train import train
from zoo.weights import sha256_file

FILES = {"model.onnx", "preprocess.json", "card.yaml", "student.safetensors", "export.json"}
_SHARED: dict[str, Path] = {}


def quiet(*_):
    pass


def quick_digits_run(root: Path) -> Path:
    """A finished kd_digits run folder, trained once per session (also used by test_runtime.py)."""
    if "run" not in _SHARED:
        with pytest.MonkeyPatch.context() as patch:  # the per-test ZOO_HOME fixture is not there for a session
            patch.setenv("ZOO_HOME", str(root / "zoo_home"))
            cfg = compose("kd_digits", QUICK + ["method=ce", "trainer.max_epochs=2", f"run.root={root / 'runs'}"])
            _SHARED["run"] = train(cfg, say=quiet).run_dir
    return _SHARED["run"]


def quick_digits_export(root: Path) -> Path:
    """That run exported with the default profile, once per session."""
    if "export" not in _SHARED:
        _SHARED["export"] = export_run(quick_digits_run(root), root / "exports" / "default", say=quiet).folder
    return _SHARED["export"]


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export_shared")


@pytest.fixture
def digits_run(shared_root) -> Path:
    return quick_digits_run(shared_root)


@pytest.fixture
def exported(shared_root) -> Path:
    return quick_digits_export(shared_root)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_export_writes_a_complete_checked_folder(digits_run, exported):
    record = read_record(digits_run / "record.json")
    assert {p.name for p in exported.iterdir()} == FILES | {WRITTEN}  # WRITTEN: what a later export may replace
    assert not leftovers(exported.parent)
    onnx.checker.check_model(onnx.load(str(exported / "model.onnx")), full_check=True)

    report = json.loads((exported / "export.json").read_text())
    parity = report["parity"]
    assert parity["passed"] and parity["split"] == "test" and parity["labels"] == "targets"
    assert parity["samples"] == record.data["sizes"]["test"] == 449
    assert 0 <= parity["max_abs_diff"] <= 1e-4 and parity["nonfinite_outputs"] == 0
    assert parity["metric_onnx"] == parity["metric_torch"] and parity["argmax_agreement"] == 1.0
    # The PyTorch side of the check reproduces the number the run recorded.
    assert parity["metric_torch"] == pytest.approx(record.metrics["test/acc"], abs=1e-9)
    assert report["graph"]["opset"] == 18 and report["graph"]["batch_axis"] == "batch"
    assert report["source"]["run_id"] == record.run_id and report["versions"]["onnxruntime"]
    for name, entry in report["files"].items():
        assert sha256_file(exported / name) == entry["sha256"]

    card = parse_card(yaml.safe_load((exported / "card.yaml").read_text()), "card.yaml")
    assert card.arch == "mlp.tiny" and card.task == "kd_digits" and card.num_classes == 10
    assert card.weights.urls == [(exported / "student.safetensors").as_uri()]
    assert card.weights.sha256 == sha256_file(digits_run / "student.safetensors")
    assert card.weights.size == (exported / "student.safetensors").stat().st_size
    # The card quotes what the check measured from the ONNX graph (equal to the record here: the weights are the run's).
    assert [(m.name, m.value) for m in card.metrics] == [("test/acc", parity["metric_onnx"])]
    assert card.metrics[0].source.startswith("export:onnx top-1 on 449 test samples")
    assert card.metrics[0].value == pytest.approx(record.metrics["test/acc"], abs=1e-9)

    spec = json.loads((exported / "preprocess.json").read_text())
    assert spec["input"]["shape"] == [1, 8, 8] and spec["pixel_max"] == 16.0 and spec["mean"] is None
    assert spec["classes"] == [str(i) for i in range(10)]


def test_export_command_defaults_into_the_run_folder_and_replaces_an_old_export(digits_run, capsys):
    assert main(["export", f"run={digits_run}"]) == 0
    folder = digits_run / "export" / "default"
    first = json.loads((folder / "export.json").read_text())["created"]
    (folder / "notes.txt").write_text("the user's, not the zoo's")
    assert main(["export", f"run={digits_run}", "profile=default"]) == 0
    assert {p.name for p in folder.iterdir()} == FILES | {WRITTEN, "notes.txt"}  # the zoo's files replaced, ...
    assert (folder / "notes.txt").read_text() == "the user's, not the zoo's"  # ... the user's kept
    assert json.loads((folder / "export.json").read_text())["created"] >= first
    assert not leftovers(folder.parent)
    capsys.readouterr()
    assert main(["export"]) == 2
    assert "exactly one of run= or model=" in capsys.readouterr().err
    assert main(["export", f"run={digits_run}", "batches=8"]) == 2  # a key of zoo bench, not of zoo export
    assert "zoo export does not take 'batches='" in capsys.readouterr().err


def test_a_graph_that_differs_from_the_student_fails_loudly_and_writes_nothing(digits_run, tmp_path, monkeypatch):
    real_to_onnx = classifier.to_onnx

    def perturbed(model, path, input_shape, profile):
        model = type(model)(10, input_shape, (32,))
        model.load_state_dict(load_run(digits_run).student.state_dict())
        with torch.no_grad():
            model.head.bias[3] += 5.0  # a different model: class 3 wins far more often
        real_to_onnx(model, path, input_shape, profile)

    monkeypatch.setattr(classifier, "to_onnx", perturbed)
    out = tmp_path / "broken"
    with pytest.raises(ExportCheckError, match=r"logits differ by up to .*top-1 accuracy"):
        export_run(digits_run, out, say=quiet)
    assert not out.exists() and not leftovers(tmp_path)


def test_a_corrupted_initializer_fails_the_check_even_with_lenient_logits(digits_run, exported, tmp_path):
    proto = onnx.load(str(exported / "model.onnx"))
    bias = next(i for i in proto.graph.initializer if tuple(i.dims) == (10,))  # the head's bias
    values = onnx.numpy_helper.to_array(bias).copy()
    values[0] += 3.0
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    onnx.save(proto, str(tmp_path / "model.onnx"))
    loaded = load_run(digits_run)

    with pytest.raises(ExportCheckError, match="logits differ"):
        check_parity(loaded.student, tmp_path / "model.onnx", held_out_batches(loaded.datamodule),
                     load_profile("default"))
    lenient = parse_profile({"opset": 18, "dynamic_axes": {"batch": True, "sequence": False}, "precision": "fp32",
                             "tolerance": {"max_abs_diff": 100.0, "metric_abs_diff": 0.0}}, "lenient")
    with pytest.raises(ExportCheckError, match="top-1 accuracy"):  # the metric check stands on its own
        check_parity(loaded.student, tmp_path / "model.onnx", held_out_batches(loaded.datamodule), lenient)


def test_nan_outputs_never_pass():
    result = {"nonfinite_outputs": 0, "max_abs_diff": float("nan"), "max_abs_diff_tolerance": 1e-4,
              "metric_abs_diff": float("nan"), "metric_abs_diff_tolerance": 0.0, "metric_onnx": 0.0,
              "metric_torch": 0.9}
    assert len(violations(result)) == 2
    assert violations({**result, "max_abs_diff": 0.0, "metric_abs_diff": 0.0, "nonfinite_outputs": 3})


def test_fp16_profile_passes_its_looser_tolerance(digits_run, tmp_path):
    try:
        result = export_run(digits_run, tmp_path / "fp16", "fp16", say=quiet)
    except (ExportCheckError, ConfigError) as err:
        if "NOT_IMPLEMENTED" in str(err) or "implementation" in str(err):
            pytest.skip(f"this onnxruntime has no fp16 kernels for the CPU: {err}")
        raise
    proto = onnx.load(str(result.folder / "model.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    parity = result.report["parity"]
    assert 0 < parity["max_abs_diff"] <= 5e-2  # really half precision, and within the fp16 profile
    assert parity["metric_abs_diff"] <= 5e-3
    assert json.loads((result.folder / "preprocess.json").read_text())["input"]["dtype"] == "float16"


def test_opset_and_exporter_follow_the_profile(digits_run, exported, tmp_path):
    def profile(opset, exporter):
        path = tmp_path / f"{exporter}{opset}.yaml"
        path.write_text(yaml.safe_dump({"opset": opset, "exporter": exporter, "precision": "fp32",
                                        "dynamic_axes": {"batch": True, "sequence": False},
                                        "tolerance": {"max_abs_diff": 1e-4, "metric_abs_diff": 0.0}}))
        return str(path)

    legacy = export_run(digits_run, tmp_path / "legacy", profile(17, "torchscript"), say=quiet)
    assert legacy.report["graph"]["opset"] == 17 and legacy.report["parity"]["passed"]
    # A model whose opset is not the profile's (the dynamo exporter keeps 18 when it cannot down-convert).
    with pytest.raises(ExportCheckError, match="opset 18, profile 'dynamo19' asks for 19"):
        check_graph(exported / "model.onnx", load_profile(profile(19, "dynamo")))


def test_profiles_are_strict():
    assert {"default", "fp16"} <= set(profile_names())
    for name in profile_names():  # every shipped profile loads
        load_profile(name)
    good = {"opset": 18, "dynamic_axes": {"batch": True, "sequence": False}, "precision": "fp32",
            "tolerance": {"max_abs_diff": 1e-4, "metric_abs_diff": 0.0}}
    with pytest.raises(ConfigError, match="unknown key 'tolerance.max_abs_dif'") as typo:
        parse_profile({**good, "tolerance": {"max_abs_dif": 1e-4, "metric_abs_diff": 0.0}}, "typo")
    assert "did you mean 'max_abs_diff'" in typo.value.hint
    with pytest.raises(ConfigError, match="unknown key 'precison'"):
        parse_profile({**good, "precison": "fp16"}, "typo")
    with pytest.raises(ConfigError, match="missing key 'precision'"):
        parse_profile({k: v for k, v in good.items() if k != "precision"}, "short")
    with pytest.raises(ConfigError, match="precision must be one of"):
        parse_profile({**good, "precision": "int8"}, "int8")
    with pytest.raises(ConfigError, match="must be true or false"):
        parse_profile({**good, "dynamic_axes": {"batch": "yes", "sequence": False}}, "axes")
    with pytest.raises(UnknownNameError, match="unknown export profile 'defualt'") as unknown:
        load_profile("defualt")
    assert "did you mean 'default'" in unknown.value.hint


def test_export_refuses_to_replace_a_folder_that_is_not_an_export(digits_run, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an export folder"):
        export_run(digits_run, tmp_path / "mine", say=quiet)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_model_card_exports_with_its_task_data(digits_run, tmp_path, zoo_home):
    from zoo.cards import InputSpec, MetricEntry, ModelCard, WeightsSpec

    weights = digits_run / "student.safetensors"
    card = ModelCard(name="mlp.tiny.test_digits", arch="mlp.tiny", task="kd_digits", num_classes=10,
                     input=InputSpec(shape=[1, 8, 8]), metrics=[MetricEntry("test/acc", 0.5, "paper:none")],
                     weights=WeightsSpec(urls=[weights.as_uri()], sha256=sha256_file(weights),
                                         size=weights.stat().st_size))
    (zoo_home / "models").mkdir()  # a card of the user's own, without editing the zoo's models/
    (zoo_home / "models" / f"{card.name}.yaml").write_text(card.to_yaml())
    assert main(["export", f"model={card.name}", f"out={tmp_path / 'card'}"]) == 0
    report = json.loads((tmp_path / "card" / "export.json").read_text())
    assert report["source"] == {"kind": "card", "card": card.name, "task": "kd_digits",
                                "data": report["source"]["data"]}
    assert report["parity"]["passed"] and report["parity"]["samples"] == 449
    assert sha256_file(tmp_path / "card" / "student.safetensors") == card.weights.sha256


def test_bench_of_a_run_writes_a_record(digits_run, capsys):
    before = set(digits_run.glob("bench-*.json"))
    assert main(["bench", f"run={digits_run}", "batches=1,4", "warmup=2", "iters=5", "threads=1"]) == 0
    written = set(digits_run.glob("bench-*.json")) - before
    assert len(written) == 1
    record = json.loads(written.pop().read_text())
    assert [row["batch"] for row in record["rows"]] == [1, 4]
    assert record["threads"] == {"torch_intra_op": 1, "ort_intra_op": 1, "ort_inter_op": 1}
    for row in record["rows"]:
        assert row["max_abs_diff"] <= 1e-4 and row["ratio_ort_over_eager"] > 0
        assert row["eager"]["p95_ms"] >= row["eager"]["p50_ms"] > 0
    assert record["hardware"]["cpu_count"] and record["versions"]["onnxruntime"]
    assert "ort/eager" in capsys.readouterr().out


def test_resnet18_exports_and_benches(tmp_path):
    """timm's resnet18 graph at 96 px: the layers and the export path of the ImageNet recipes, at a tenth of the
    224-px cost (benchmarks/onnx_vs_eager.py measures 224 px)."""
    from zoo.archs import create

    torch.manual_seed(0)
    model = create("resnet18", 10, (3, 96, 96)).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy small CPU makes torch's multi-threaded convs far slower, not faster
    try:
        result = export_any(model, tmp_path / "resnet18", arch="resnet18", input_shape=(3, 96, 96),
                            num_classes=10, samples=2)
    finally:
        torch.set_num_threads(threads)
    parity = result.report["parity"]
    assert parity["labels"] == "torch_argmax" and parity["max_abs_diff"] <= 1e-4 and parity["argmax_agreement"] == 1
    record = bench_folder(result.folder, batches=(1,), warmup=1, iters=2, threads=1)
    assert record["arch"] == "resnet18" and record["rows"][0]["max_abs_diff"] <= 1e-4
    assert "resnet18" in format_table(record)
    assert np.isfinite(record["rows"][0]["ratio_ort_over_eager"])


def test_eval_of_a_run_folder_reproduces_its_record(digits_run, capsys):
    record = read_record(digits_run / "record.json")
    assert main(["eval", f"run={digits_run}"]) == 0
    assert f"test/acc: {record.metrics['test/acc']:.4f}" in capsys.readouterr().out
    assert main(["eval", f"run={digits_run}", "split=val"]) == 0
    assert f"val/acc: {record.metrics['val/acc']:.4f}" in capsys.readouterr().out
    assert main(["eval", f"run={digits_run}", "split=dev"]) == 2
    assert "unknown split 'dev'" in capsys.readouterr().err


def test_weights_damaged_after_the_run_are_refused_before_anything_is_written(digits_run, tmp_path):
    """ONNX and PyTorch agree on damaged weights (both read them), so the run's record is the check: the weights
    must score the test accuracy the run recorded. (A record that names the weights' sha256 refuses them before,
    in ``load_run``: tests/test_integrity.py; this is the check for records from before the sha256.)"""
    import shutil

    from safetensors.torch import load_file, save_file

    damaged = tmp_path / "run"
    shutil.copytree(digits_run, damaged, ignore=shutil.ignore_patterns("export"))
    raw = json.loads((damaged / "record.json").read_text())
    del raw["student"]["sha256"]
    (damaged / "record.json").write_text(json.dumps(raw))
    state = load_file(damaged / "student.safetensors")
    state = {name: -value if value.is_floating_point() else value for name, value in state.items()}
    save_file(state, damaged / "student.safetensors")  # a valid file, other weights
    with pytest.raises(ExportCheckError, match=r"scores test top-1 .* but its record says .*: these are not the "
                                               r"weights the run finished with"):
        export_run(damaged, tmp_path / "out", say=quiet)
    assert not (tmp_path / "out").exists()
    report = export_run(digits_run, tmp_path / "good", say=quiet).report
    assert report["parity"]["record_checked"] and report["parity"]["record_metric"] == read_record(
        digits_run / "record.json").metrics["test/acc"]
