"""Task detr_kitti: composition (real KITTI vs. the mini preset), the missing-KITTI message, a reproduce of every
arm with fast_dev_run on a tiny kitti_mini with tiny random DETRs, and the detector export."""

import json

import pytest
from omegaconf import OmegaConf

from tests.helpers import DETR_TINY

pytest.importorskip("transformers")

from zoo.cli import main  # noqa: E402
from zoo.config import compose  # noqa: E402
from zoo.train import train  # noqa: E402

TINY = DETR_TINY


def quiet(*_):
    pass


def test_real_kitti_by_default_and_mini_switches_models_and_recipe():
    real = compose("detr_kitti")
    assert real.data.name == "kitti" and real.trainer.accelerator == "gpu"
    assert real.student.arch == "deformable_detr.r18" and real.teacher.arch in ("deformable_detr.r50",
                                                                              "deformable_detr.r101")
    assert real.optim.lr == 1e-4 and real.optim.backbone_lr == 1e-5 and real.trainer.gradient_clip_val == 0.1
    assert real.teacher.recipe.method == "detr_alone" and real.reproduce.baseline == "alone"
    mini = compose("detr_kitti", ["data=kitti_mini"])
    assert mini.trainer.accelerator == "cpu" and mini.student.arch == mini.teacher.arch == "deformable_detr.tiny"
    assert mini.student.kwargs.pretrained_backbone is False and mini.teacher.kwargs.d_model == 128
    # user overrides still win over the preset
    assert compose("detr_kitti", ["data=kitti_mini", "trainer.max_epochs=2"]).trainer.max_epochs == 2


def test_reproduce_arms_are_the_spec_ablation_ladder():
    """(a) alone, (b) memory without GT weighting, (c) with it, (d) (c) + GT-query logit KD, and logit_kd."""
    from zoo.leaderboard import arms_of

    arms = {arm.name: arm.config["method"] for arm in arms_of("detr_kitti")}
    assert list(arms) == ["alone", "memory", "memory_gt", "clockdistill", "logit_kd"]
    assert arms["alone"]["name"] == "detr_alone" and arms["logit_kd"]["name"] == "detr_logit_kd"
    ladder = [arms[name] for name in ("memory", "memory_gt", "clockdistill")]
    assert all(method["name"] == "clockdistill" and method["memory_weight"] > 0 for method in ladder)
    assert [method["location"]["mode"] for method in ladder] == ["uniform", "inverse_area", "inverse_area"]
    assert [method["logit_weight"] for method in ladder] == [0, 0, 1.0]
    # the arms differ in those two switches only
    rest = [{k: v for k, v in method.items() if k not in ("location", "logit_weight")} for method in ladder]
    assert rest[0] == rest[1] == rest[2]
    # (d) is the method as the task ships it, with the spec's readings
    shipped = compose("detr_kitti").method
    assert OmegaConf.to_container(shipped, resolve=True) == arms["clockdistill"]
    assert shipped.layers == "proportional" and shipped.gt_reference == "box" and shipped.gt_shared


def test_without_kitti_the_error_says_where_it_goes(capsys, tmp_path):
    assert main(["train", "task=detr_kitti", f"run.root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "data.root" in err and "data=kitti_mini" in err


def test_reproduce_runs_every_arm_and_reports_gain_over_the_student_alone(runs, capsys, tmp_path):
    """Every arm of the task once (fast_dev_run on the tiny kitti_mini): records, the teacher's mAP, the gain."""
    from zoo.records import read_record

    assert main(["reproduce", "task=detr_kitti", "seeds=1", *TINY, *runs]) == 0
    assert "gain" in capsys.readouterr().out  # the column "gain over alone" (rich may wrap it)
    summary = json.loads(next((tmp_path / "runs" / "detr_kitti").glob("reproduce-*.json")).read_text())
    assert set(summary["arms"]) == {"alone", "memory", "memory_gt", "clockdistill", "logit_kd"}
    assert summary["baseline"] == "alone" and summary["metric"] == "test/map"  # the detection kind's headline
    assert OmegaConf.create(summary).teacher  # the teacher's test/map is reported once
    records = list(map(read_record, summary["records"]))
    assert sorted(record.method for record in records) == ["clockdistill"] * 3 + ["detr_alone", "detr_logit_kd"]
    ladder = sorted((r.config["method"]["logit_weight"], r.config["method"]["location"]["mode"]) for r in records
                    if r.method == "clockdistill")
    assert ladder == [(0, "inverse_area"), (0, "uniform"), (1.0, "inverse_area")]  # memory_gt, memory, clockdistill
    for record in records:
        assert record.student.name == "deformable_detr.tiny" and record.data["kind"] == "detection"
        assert {"test/map", "test/map_50", "val/map"} <= set(record.metrics)
        assert all(0.0 <= v <= 1.0 for k, v in record.metrics.items() if "/ap_" in k or k.endswith("map"))
        assert record.student.flops and record.student.flops > 0
        if record.method == "detr_alone":
            assert not record.teachers
        else:
            assert record.teachers[0].params > record.student.params and "test/map" in record.teacher_metrics
            assert record.teacher_queries["forward_passes"] >= 1
        assert json.loads(json.dumps(record.config))["student"]["kwargs"] == {"pretrained_backbone": False}


def test_student_detector_exports_to_onnx_with_parity(runs):
    pytest.importorskip("onnxruntime")
    result = train(compose("detr_kitti", TINY + runs + ["method=detr_alone"]), say=quiet)
    assert main(["export", f"run={result.run_dir}"]) == 0
    folder = result.run_dir / "export" / "detector"
    report = json.loads((folder / "export.json").read_text())
    assert {"model.onnx", "student.safetensors", "export.json"} <= {p.name for p in folder.iterdir()}
    parity = report["parity"]
    assert parity["passed"] and parity["samples"] == 4 and parity["max_abs_diff"] <= 1e-4
    assert parity["metric_onnx"] == parity["metric_torch"]
    assert report["io"]["inputs"]["inputs"] == [None, 3, 48, 144]


@pytest.mark.slow
def test_clockdistill_beats_the_student_alone_on_kitti_mini(runs, tmp_path):
    """The issue's check (issues 22 and before): the five arms (the spec's ladder alone, memory, memory_gt,
    clockdistill, and logit_kd) over 3 seeds, on one CPU core in about 2.5 hours: the teacher about 14 min,
    trained once, then 15 student runs of 6 to 13 min each (alone fastest, clockdistill slowest).

    Measured 2026-12-02 by the same command (test = val split, 100 frames): teacher mAP 0.226; alone 0.073,
    memory 0.127, memory_gt 0.134, clockdistill 0.115, logit_kd 0.086 (leaderboards/detr_kitti.md).
    """
    assert main(["reproduce", "task=detr_kitti", "data=kitti_mini", "seeds=3", "trainer.enable_progress_bar=false",
                 *runs]) == 0
    summary = json.loads(next((tmp_path / "runs" / "detr_kitti").glob("reproduce-*.json")).read_text())
    arms = summary["arms"]
    assert set(arms) == {"alone", "memory", "memory_gt", "clockdistill", "logit_kd"}
    assert all(len(arm["values"]) == 3 for arm in arms.values())
    teacher = next(iter(summary["teacher"].values()))
    assert teacher > max(arm["mean"] for arm in arms.values())
    assert arms["clockdistill"]["mean"] > arms["alone"]["mean"]
