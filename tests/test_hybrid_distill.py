"""hybrid_distill (zoo/methods/hybrid_distill.py, hybrid_losses.py): the losses by hand, token dropping, bad input
as one line, and the staged run end to end (distil without labels -> probe -> fine-tune -> record -> ONNX export) on
Fashion-MNIST-format files and on an ImageFolder with tiny ViTs for the paper's."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import fake_fashion_mnist, photo_folder
from zoo.archs import create
from zoo.config import compose
from zoo.errors import ConfigError
from zoo.methods.base import MethodContext
from zoo.methods.hybrid_losses import (
    drop_ratio_at,
    keep_by_score,
    layer_pairs,
    relation_kl,
    restrict_attention,
    select_tokens,
)
from zoo.paths import data_dir
from zoo.registry import METHODS

QUIET = ["trainer.enable_progress_bar=false"]


# -- the losses on tensors ------------------------------------------------------------------------------------------
def test_the_relation_loss_is_zero_for_identical_attention_and_matches_a_2_token_1_head_example():
    attention = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    assert relation_kl(attention, attention).item() == pytest.approx(0.0, abs=1e-7)
    teacher = torch.tensor([[[[0.5, 0.5], [0.9, 0.1]]]])
    student = torch.tensor([[[[0.25, 0.75], [0.5, 0.5]]]])
    rows = [0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75), 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.2)]
    assert relation_kl(student, teacher).item() == pytest.approx(sum(rows) / 2, abs=1e-6)  # 0.2560
    assert relation_kl(student, teacher, rows="sum").item() == pytest.approx(sum(rows), abs=1e-6)


def test_restricted_attention_rows_sum_to_one_and_keep_the_cls_token_and_the_kept_patches():
    attention = torch.softmax(torch.randn(2, 3, 7, 7), -1)  # CLS + 6 patches
    keep = torch.tensor([[0, 2, 5], [1, 3, 4]])
    restricted = restrict_attention(attention, keep)
    assert restricted.shape == (2, 3, 4, 4)
    assert torch.allclose(restricted.sum(-1), torch.ones(2, 3, 4), atol=1e-6)
    rows = attention[0, 1][[0, 1, 3, 6]][:, [0, 1, 3, 6]]  # image 0, head 1: CLS and patches 0, 2, 5
    assert torch.allclose(restricted[0, 1], rows / rows.sum(-1, keepdim=True), atol=1e-6)
    assert restrict_attention(attention, None) is attention
    tokens = torch.randn(2, 7, 8)
    assert torch.equal(select_tokens(tokens, keep)[1], tokens[1, [0, 2, 4, 5]])


def test_tokens_are_kept_by_the_teachers_cls_attention_and_the_ratio_rises_then_holds():
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.9], [0.4, 0.3, 0.2, 0.1]])
    assert keep_by_score(scores, 0.5).tolist() == [[1, 3], [0, 1]]  # the two highest, in image order
    assert keep_by_score(scores, 0.0) is None and keep_by_score(scores, 0.99).shape == (2, 1)
    assert [drop_ratio_at(s, 100, 0.5, 0.5) for s in (0, 25, 50, 99)] == [0.0, 0.25, 0.5, 0.5]
    assert drop_ratio_at(0, 100, 0.5, 0.0) == 0.5


def test_relation_layers_default_to_every_block_but_the_last():
    assert layer_pairs(None, None, 4, 4) == [(1, 1), (2, 2), (3, 3)]
    assert layer_pairs([2, 3], None, 4, 8) == [(2, 4), (3, 6)]
    assert layer_pairs([1], [5], 4, 6) == [(1, 5)]


# -- the method on tiny ViTs ----------------------------------------------------------------------------------------
def method(student="vit.mini_p4", teachers=("vit.mini_p4", "vit.mini_p4"), student_kwargs=None, **settings):
    losses = settings.pop("losses", None)
    cfg = OmegaConf.merge(OmegaConf.load(data_dir("tasks") / "method" / "hybrid_distill.yaml"), settings)
    if losses is not None:  # a stage's losses replace the defaults, as in a staged run
        cfg.losses = losses
    torch.manual_seed(0)
    context = MethodContext(kind="image_classification", method=cfg, num_classes=10, input_shape=(1, 28, 28),
                            optim=OmegaConf.create({"name": "adamw", "lr": 1e-3, "weight_decay": 0.0}))
    models = [create(name, 10, (1, 28, 28)) for name in teachers]
    return METHODS.get("hybrid_distill")(create(student, 10, (1, 28, 28), **(student_kwargs or {})), models, context)


def batch(n=4):
    torch.manual_seed(1)
    return {"inputs": torch.randn(n, 1, 28, 28), "targets": torch.randint(0, 10, (n,))}


def test_a_student_equal_to_both_teachers_has_no_relation_loss_and_only_the_projector_learns_features():
    m = method()
    m.student.load_state_dict(m.teachers[0].state_dict())
    losses = m.losses(batch())
    assert set(losses) == {"relation", "feature"} and losses["relation"].item() == pytest.approx(0.0, abs=1e-6)
    losses["feature"].backward()
    assert m.projector.weight.grad is not None and m.student.head.weight.grad is None
    assert m.teacher_calls == {"forward_passes": 2, "samples": 8}
    assert not any(key.startswith("teachers") for key in m.state_dict())  # teachers stay out of checkpoints


def test_token_dropping_shortens_the_student_and_still_gives_every_loss():
    m = method(drop_ratio=0.5, losses={"relation": 1.0, "feature": 1.0, "hard": 1.0})
    losses = m.losses(batch())
    assert set(losses) == {"relation", "feature", "hard"} and all(torch.isfinite(v) for v in losses.values())
    assert m.student_taps.probs[1].shape[-1] == 1 + 25  # 49 patches, 24 dropped at the final ratio, CLS kept
    sum(losses.values()).backward()
    assert m.student.patch_embed.proj.weight.grad is not None


def test_a_labels_only_stage_needs_no_teacher():
    m = method(teachers=(), losses={"hard": 1.0})
    assert set(m.losses(batch())) == {"hard"} and m.teacher_calls["forward_passes"] == 0


@pytest.mark.parametrize("settings, message", [
    ({"relation_layers": [2, 5]}, r"method.relation_layers=\[2, 5\] is outside the student's 4 blocks"),
    ({"drop_ratio": 1.0}, r"method.drop_ratio=1.0: the fraction of patch tokens dropped must be in \[0, 1\)"),
    ({"student_kwargs": {"num_heads": 2}}, "the student has 2 heads a block, the MIM teacher 4"),
    ({"student_kwargs": {"patch_size": 7}}, "the student sees 4x4 patches .* the MIM teacher 7x7"),
    ({"teachers": ("vit.mini_p4",)}, "hybrid_distill distils from two teachers"),
    ({"teachers": ("convnet.small", "vit.mini_p4")}, "the MIM teacher is a ConvNet"),
    ({"mim_input": "both"}, "method.mim_input=both"),
])
def test_bad_input_is_one_line(settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        method(**settings)
    assert "\n" not in str(err.value)


def test_unequal_heads_are_compared_head_averaged_with_the_mapping():
    m = method(student_kwargs={"num_heads": 2}, head_map="average")
    assert torch.isfinite(m.losses(batch())["relation"])


# -- staged runs end to end -----------------------------------------------------------------------------------------
SMOKE_TEACHERS = ["+teacher.roles.mim.recipe.smoke=true", "+teacher.roles.discriminative.recipe.smoke=true"]


@pytest.fixture
def fmnist_files(tmp_path):
    fake_fashion_mnist(tmp_path / "fmnist", train=160, test=40)
    return [f"data.root={tmp_path / 'fmnist'}", "data.val_size=40", "data.batch_size=32"]


def mini_run(fmnist_files, runs, *extra):
    from zoo.train import train

    cfg = compose("hybrid_fashion_mnist", [*fmnist_files, *QUIET, *SMOKE_TEACHERS, *runs, "trainer.fast_dev_run=true",
                                           "probe.iterations=5", *extra])
    return train(cfg, say=lambda *_: None)


def test_the_mini_task_distils_without_labels_probes_and_fine_tunes(fmnist_files, runs):
    record = mini_run(fmnist_files, runs, "method.drop_ratio=0.5").record
    assert [s["name"] for s in record.stages] == ["distil", "finetune"]
    assert set(record.stages[0]["curve"]) == {"relation", "feature"} and set(record.stages[1]["curve"]) == {"hard"}
    assert {"val/probe_acc", "test/probe_acc", "test/acc"} <= set(record.metrics)
    assert record.metrics["test/probe_acc"] == record.stages[0]["probe"]["test/probe_acc"]
    diagnostics = record.stages[0]["diagnostics"]
    assert set(diagnostics["attention_distance"]) == {"student", "mim_teacher", "discriminative_teacher"}
    assert all(0 < h <= 1 for block in diagnostics["attention_entropy"]["mim_teacher"] for h in block)
    assert set(record.stages[1]["diagnostics"]["attention_distance"]) == {"student"}
    assert [t.role for t in record.teachers] == ["mim", "discriminative"]
    assert record.teacher_queries["forward_passes"] == 2  # one step: each teacher once


@pytest.mark.slow  # about 40 s on a loaded 2-core machine, nearly all of it torch's dynamo ONNX export of the ViT
def test_the_fine_tuned_student_exports_to_onnx_with_parity(fmnist_files, runs, tmp_path):
    from zoo.export.dispatch import export_run

    result = mini_run(fmnist_files, runs)
    exported = export_run(result.run_dir, tmp_path / "export", say=lambda *_: None)
    report = exported.report
    assert exported.folder.joinpath("model.onnx").is_file() and report["parity"]["record_checked"]
    assert report["parity"]["max_abs_diff"] <= report["parity"]["max_abs_diff_tolerance"]


def test_the_labels_arm_has_the_same_stages_without_teachers(fmnist_files, runs):
    from zoo.train import train

    cfg = compose("hybrid_fashion_mnist", [*fmnist_files, *QUIET, *runs, "trainer.fast_dev_run=true",
                                           "stages=hybrid_labels", "probe.iterations=5"])
    record = train(cfg, say=lambda *_: None).record
    assert record.teachers == [] and "test/probe_acc" in record.metrics
    assert [s["name"] for s in record.stages] == ["labels", "finetune"]


@pytest.mark.parametrize("override, message", [
    ("stages.0.teacher=[mim,teaching_assistant]", r"stages.0 \(distil\): unknown teacher role 'teaching_assistant'"),
    ("stages.0={name: distil, losses: {hard: 1.0}, epochs: 1, probe: sometimes}",
     r"stages.0 \(distil\): probe='sometimes'"),
])
def test_a_bad_stage_is_one_line(override, message):
    from zoo.staged import check_stages

    with pytest.raises(ConfigError, match=message):
        check_stages(compose("hybrid_fashion_mnist", [override]), ("relation", "feature", "hard"))


def test_the_paper_task_composes_and_runs_every_stage_with_tiny_vits_on_an_imagefolder(tmp_path, runs):
    """hybrid_imagenet's own recipe and data path, with tiny random ViTs in place of ViT-B, MAE ViT-B and DeiT-B."""
    from zoo.train import train
    from zoo.weights import save_weights

    photo_folder(tmp_path / "imagenet")
    files = {}
    for role in ("mim", "discriminative"):
        files[role] = tmp_path / f"{role}.safetensors"
        save_weights(create("vit", 3, (3, 32, 32), patch_size=8, embed_dim=32, depth=2, num_heads=2), files[role])
    tiny = "{patch_size: 8, embed_dim: 32, depth: 2, num_heads: 2}"
    paper = compose("hybrid_imagenet")
    assert paper.student.arch == "vit_base_patch16_224" and paper.stages[0].epochs == 300
    assert paper.teacher.roles.mim.arch == "vit_base_patch16_224.mae"
    overrides = ["trainer=cpu", "trainer.fast_dev_run=true", *QUIET, f"data.root={tmp_path / 'imagenet'}",
                 "data.image_size=32", "data.batch_size=4", "data.num_workers=0", "method.drop_ratio=0.5",
                 "student.arch=vit", f"+student.kwargs={tiny}", "probe.iterations=5", *runs]
    for role in ("mim", "discriminative"):
        overrides += [f"teacher.roles.{role}.arch=vit", f"teacher.roles.{role}.pretrained=false",
                      f"teacher.roles.{role}.weights={files[role]}", f"+teacher.roles.{role}.kwargs={tiny}"]
    result = train(compose("hybrid_imagenet", overrides), say=lambda *_: None)
    assert [s["steps"] for s in result.record.stages] == [1, 1] and 0.0 <= result.record.metrics["test/acc"] <= 1.0


@pytest.mark.slow  # both teachers once (about 17 minutes on a loaded core; ZOO_TEST_STORES reuses yours), then
# 5 arms x 3 seeds of staged runs of 3 to 5 minutes each: about 1 to 1.5 hours on one core
def test_hybrid_on_fashion_mnist_against_its_ablations(runs, tmp_path):
    """Every arm lands within its board row (``zoo reproduce`` exits non-zero otherwise), and the issue's claims,
    hybrid (d) >= max(features (b), relations (c)) > labels alone (a) and hybrid with token dropping (e) within the
    spread of (d), are judged where the premise holds: distillation from the two teachers teaches the student
    something (d beats a by more than the spread)."""
    import json

    from tests.helpers import has_fashion_mnist
    from zoo.cli import main

    if not has_fashion_mnist():
        pytest.skip("Fashion-MNIST not installed")
    code = main(["reproduce", "task=hybrid_fashion_mnist", "seeds=3", "trainer.enable_progress_bar=false", *runs])
    summary = json.loads(next((tmp_path / "runs" / "hybrid_fashion_mnist").glob("reproduce-*.json")).read_text())
    arms = summary["arms"]
    assert code == 0, {name: (arm["mean"], arm["std"]) for name, arm in arms.items()}

    def beats(a: str, b: str) -> bool:
        return arms[a]["mean"] - arms[b]["mean"] > max(arms[a]["std"], arms[b]["std"])

    if not beats("hybrid", "labels"):
        pytest.xfail(f"premise absent: hybrid {arms['hybrid']['mean']:.4f} does not beat labels "
                     f"{arms['labels']['mean']:.4f}")
    best_single = max(("features", "relations"), key=lambda name: arms[name]["mean"])
    claim = (arms["hybrid"]["mean"] >= arms[best_single]["mean"] - arms[best_single]["std"]
             and beats(best_single, "labels")
             and abs(arms["hybrid_drop"]["mean"] - arms["hybrid"]["mean"])
             <= max(arms["hybrid"]["std"], arms["hybrid_drop"]["std"]))
    if not claim:
        pytest.xfail("claim fails: " + ", ".join(f"{name} {arm['mean']:.4f}" for name, arm in arms.items()))


def test_the_board_draws_each_variants_student_after_distillation_and_each_teacher_once(tmp_path):
    """Rows as the leaderboard gives them: the lowest seed's first measured stage, means over heads by block."""
    from types import SimpleNamespace

    from zoo.attention_distance import board_statistics, write_board_png

    def record(seed, student, teacher):
        distil = {"name": "distil", "diagnostics": {"attention_distance": {"student": student,
                                                                           "mim_teacher": teacher},
                                                    "attention_entropy": {"student": [[1.0, 0.5]]}}}
        return SimpleNamespace(seed=seed, stages=[distil, {"name": "finetune"}])

    rows = [SimpleNamespace(source="measured", variant="hybrid", records=[record(1, [[9.0, 9.0]], [[1.0, 1.0]]),
                                                                           record(0, [[2.0, 4.0], [6.0, 8.0]],
                                                                                  [[1.0, 3.0], [5.0, 5.0]])]),
            SimpleNamespace(source="measured", variant="teacher", records=[record(0, [[7.0]], [[7.0]])]),
            SimpleNamespace(source="paper", variant="hybrid (paper)", records=[])]
    found = board_statistics(rows)
    assert found == {"attention_distance": {"hybrid": [3.0, 7.0], "teacher mim": [2.0, 5.0]},
                     "attention_entropy": {"hybrid": [0.75]}}
    assert write_board_png(rows, "hybrid_fashion_mnist", tmp_path / "a.png")
    assert write_board_png(rows, "hybrid_fashion_mnist", tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert not write_board_png(rows[2:], "hybrid_fashion_mnist", tmp_path / "c.png")
