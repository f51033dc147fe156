"""The DETR methods (detr_alone, detr_logit_kd, clockdistill) on tiny random detectors: one step each."""

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("transformers")

from zoo.archs.detr_wrapper import DetrOutput  # noqa: E402
from zoo.methods.base import MethodContext  # noqa: E402
from zoo.paths import data_dir  # noqa: E402
from zoo.registry import ARCHS, METHODS  # noqa: E402

NUM_CLASSES = 3
SMALL = dict(d_model=32, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
             decoder_ffn_dim=64, num_queries=5)
OPTIM = OmegaConf.create({"name": "adamw", "lr": 1e-4, "backbone_lr": 1e-5, "weight_decay": 1e-4})


def tiny(seed: int, **extra):
    torch.manual_seed(seed)
    return ARCHS.get("deformable_detr.tiny")(num_classes=NUM_CLASSES, input_shape=(3, 64, 96), **{**SMALL, **extra})


def method_cfg(name: str, **overrides):
    return OmegaConf.merge(OmegaConf.load(data_dir("tasks") / "method" / f"{name}.yaml"), overrides)


def context(name: str, **overrides) -> MethodContext:
    return MethodContext(kind="detection", method=method_cfg(name, **overrides), optim=OPTIM,
                         num_classes=NUM_CLASSES, input_shape=(3, 64, 96))


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    pixel_mask = torch.ones(2, 64, 96, dtype=torch.long)
    pixel_mask[1, :, 64:] = 0  # the second image is narrower: padding on its right
    targets = [{"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[.5, .5, .2, .2], [.3, .3, .1, .2]]),
                "ignore_boxes": torch.tensor([[.8, .2, .1, .1]]), "ignore_labels": torch.tensor([-1])},
               {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[.4, .5, .3, .2]]),
                "ignore_boxes": torch.zeros(0, 4), "ignore_labels": torch.zeros(0, dtype=torch.long)}]
    return {"inputs": torch.randn(2, 3, 64, 96, generator=generator), "pixel_mask": pixel_mask, "targets": targets,
            "index": torch.tensor([0, 1])}


def make(name: str, teacher_extra=None, **cfg):
    student = tiny(0, decoder_layers=1)
    teachers = [] if name == "detr_alone" else [tiny(1, encoder_layers=2, **(teacher_extra or {}))]
    module = METHODS.get(name)(student, teachers, context(name, **cfg))
    return module.train(), student, teachers


@pytest.mark.parametrize("name", ["detr_alone", "detr_logit_kd", "clockdistill"])
def test_step_is_finite_and_trains_the_student_only(name, batch):
    module, student, teachers = make(name)
    losses = module.losses(batch)
    expected = {"det"} | ({"kd_cls", "kd_l1", "kd_giou"} if name != "detr_alone" else set()) | \
        ({"mem"} if name == "clockdistill" else set())
    assert set(losses) == expected
    weights = module.loss_weights()
    total = sum(weights.get(k, 1.0) * v for k, v in losses.items())
    assert all(torch.isfinite(v) for v in losses.values()) and torch.isfinite(total)
    total.backward()
    assert student.hf.model.encoder.layers[0].mlp.fc1.weight.grad.abs().sum() > 0
    for teacher in teachers:
        assert not teacher.training and all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    if name != "detr_alone":
        assert module.teacher_calls == {"forward_passes": 1, "samples": 2}


def test_clockdistill_losses_reach_embedder_and_weights_are_config(batch):
    module, _, _ = make("clockdistill", memory_weight=0.5, logit_weight=2.0, l1_weight=3.0)
    assert module.loss_weights() == {"det": 1.0, "mem": 0.5, "kd_cls": 2.0, "kd_l1": 6.0, "kd_giou": 4.0}
    losses = module.losses(batch)
    assert losses["mem"] > 0 and losses["kd_cls"] > 0
    (losses["kd_cls"] + losses["mem"]).backward()
    assert module.gt_embedder.label_embed.weight.grad.abs().sum() > 0
    assert module.adapter is None  # same width: no adapter ("auto")
    groups = module.parameter_groups()
    assert groups[1]["lr"] == 1e-5 and groups[-1]["params"][0] is module.gt_embedder.label_embed.weight


def test_clockdistill_adapts_a_wider_teacher(batch):
    module, _, _ = make("clockdistill", teacher_extra=dict(d_model=64))
    assert module.adapter is not None and module.adapter.in_features == 32 and module.adapter.out_features == 64
    losses = module.losses(batch)
    assert all(torch.isfinite(v) for v in losses.values())


def test_gt_queries_are_absent_at_inference(batch):
    module, student, _ = make("clockdistill")
    module.eval()
    with torch.no_grad():
        out = module(batch["inputs"], batch["pixel_mask"])
        plain = student(batch["inputs"], batch["pixel_mask"])
    assert isinstance(out, DetrOutput) and out.gt_logits is None and out.gt_boxes is None
    assert torch.equal(out.logits, plain.logits)  # the student alone, as exported
    # and the training-time GT group does not change the normal queries' outputs
    queries, _ = module.gt_queries(batch["targets"])
    with torch.no_grad():
        with_gt = student(batch["inputs"], batch["pixel_mask"], gt_queries=queries)
    assert torch.equal(with_gt.logits, plain.logits) and with_gt.gt_logits is not None


def test_two_teachers_are_refused():
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="one DETR teacher"):
        METHODS.get("clockdistill")(tiny(0), [tiny(1), tiny(2)], context("clockdistill"))
