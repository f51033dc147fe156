"""The DETR methods (detr_alone, detr_logit_kd, clockdistill) on tiny random detectors: one step each."""

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("transformers")

from zoo.archs.detr_wrapper import DetrOutput  # noqa: E402
from zoo.errors import ConfigError  # noqa: E402
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
    label_embed = module.gt_builder.embedder.label_embed
    assert label_embed.weight.grad.abs().sum() > 0
    assert module.adapter is None  # same width: no adapter ("auto")
    assert module.gt_builder.student_map is None and module.gt_builder.teacher_map is None  # nor projections
    groups = module.parameter_groups()
    assert groups[1]["lr"] == 1e-5 and groups[-1]["params"][0] is label_embed.weight


def test_clockdistill_adapts_a_wider_teacher(batch):
    module, _, _ = make("clockdistill", teacher_extra=dict(d_model=64))
    assert module.adapter is not None and module.adapter.in_features == 32 and module.adapter.out_features == 64
    losses = module.losses(batch)
    assert all(torch.isfinite(v) for v in losses.values())


def test_teacher_and_student_gt_queries_come_from_the_same_tensors(batch):
    """Teacher d 64, student d 32: one label embedding and one box tensor feed both groups, the student's through
    a learned projection (issue 22: before, the teacher decoded zero content here)."""
    module, _, _ = make("clockdistill", teacher_extra=dict(d_model=64))
    builder = module.gt_builder
    assert builder.embedder.hidden_size == 64 and builder.teacher_map is None  # built at the teacher's width
    assert builder.student_map.content.in_features == 64 and builder.student_map.content.out_features == 32
    student, teacher = module.gt_queries(batch["targets"])
    assert student.reference is teacher.reference and student.valid is teacher.valid
    assert student.self_attn_mask is teacher.self_attn_mask and student.center_reference is False
    assert student.content.shape[-1] == student.position.shape[-1] == 32
    assert teacher.content.shape[-1] == teacher.position.shape[-1] == 64
    torch.testing.assert_close(student.content, builder.student_map(teacher).content)
    torch.testing.assert_close(student.position, builder.student_map(teacher).position)
    # both contents hang on the one label embedding, row c_j for object j, and on nothing else of the embedder
    label_weight = builder.embedder.label_embed.weight
    for group in (student, teacher):
        grad, = torch.autograd.grad(group.content[group.valid].sum(), label_weight, retain_graph=True)
        assert grad.abs().sum(1).nonzero().flatten().tolist() == [0, 1, 2]  # labels 0, 2 and 1 of the batch
    assert all(p.requires_grad for p in builder.student_map.parameters())
    groups = module.parameter_groups()
    trained = {id(p) for group in groups for p in group["params"]}
    assert id(label_weight) in trained and id(builder.student_map.content.weight) in trained
    losses = module.losses(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["kd_cls"].backward()
    assert builder.student_map.content.weight.grad.abs().sum() > 0


def test_gt_query_width_and_the_earlier_separate_queries_are_switches(batch):
    # built at the student's width: the teacher's map exists, frozen (the teacher decodes without grad)
    module, _, _ = make("clockdistill", teacher_extra=dict(d_model=64), gt_width="student")
    builder = module.gt_builder
    assert builder.student_map is None and not any(p.requires_grad for p in builder.teacher_map.parameters())
    student, teacher = module.gt_queries(batch["targets"])
    torch.testing.assert_close(teacher.content, builder.teacher_map(student).content)
    # gt_shared=false: the earlier reading, a zero-content teacher group at its own width
    module, _, _ = make("clockdistill", teacher_extra=dict(d_model=64), gt_shared=False)
    student, teacher = module.gt_queries(batch["targets"])
    assert (teacher.content == 0).all() and student.content.shape[-1] == 32 and teacher.content.shape[-1] == 64
    assert torch.equal(student.reference, teacher.reference)
    with pytest.raises(ConfigError, match="gt_width"):
        make("clockdistill", gt_width=12)


@pytest.mark.parametrize("switch, center", [("box", False), ("center", True), ("native", None)])
def test_gt_reference_switch_reaches_the_queries(batch, switch, center):
    module, _, _ = make("clockdistill", gt_reference=switch)
    student, teacher = module.gt_queries(batch["targets"])
    assert student.center_reference is center and teacher.center_reference is center


def decoder_calls(model):
    calls = []
    handle = model.hf.model.decoder.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("mode", ["uniform", "inverse_area"])
def test_memory_arms_decode_no_gt_queries(batch, mode):
    """Arms (b) and (c) of detr_kitti: logit_weight 0 leaves the memory term alone, without the GT-query cost."""
    module, student, teachers = make("clockdistill", logit_weight=0, location={"mode": mode})
    assert module.gt_builder is None and module.use_memory and not module.use_logit
    (s_calls, s_handle), (t_calls, t_handle) = decoder_calls(student), decoder_calls(teachers[0])
    try:
        losses = module.losses(batch)
    finally:
        s_handle.remove()
        t_handle.remove()
    assert set(losses) == {"det", "mem"} and losses["mem"] > 0
    assert len(s_calls) == len(t_calls) == 1  # the normal queries only
    # memory only, no GT weighting: the same as the plain mean over real tokens
    if mode == "uniform":
        s_out = student(batch["inputs"], batch["pixel_mask"])
        with torch.no_grad():
            t_out = teachers[0](batch["inputs"], batch["pixel_mask"])
        real = s_out.memory_mask
        plain = (s_out.memory - t_out.memory).pow(2).mean(-1)[real].mean()
        torch.testing.assert_close(losses["mem"], plain)
    with pytest.raises(ConfigError, match="distils nothing"):
        make("clockdistill", logit_weight=0, memory_weight=0)
    memory_off, _, _ = make("clockdistill", memory_weight=0)
    assert set(memory_off.losses(batch)) == {"det", "kd_cls", "kd_l1", "kd_giou"} and memory_off.adapter is None


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
    with pytest.raises(ConfigError, match="one DETR teacher"):
        METHODS.get("clockdistill")(tiny(0), [tiny(1), tiny(2)], context("clockdistill"))
