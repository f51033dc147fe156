"""FitNets, the worked example of README's "Adding a method": its regressor is sized by a dry run, its hint term
is checked by hand, and its task trains end to end."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from zoo.errors import ConfigError
from zoo.methods.base import MethodContext
from zoo.methods.fitnets import hint_loss, make_regressor
from zoo.registry import ARCHS, METHODS


def fitnets(student, teachers, **method):
    cfg = {"name": "fitnets", "alpha": 0.9, "temperature": 4.0, "hint_weight": 1.0,
           "student_features": ["features"], "teacher_features": ["features"], **method}
    context = MethodContext(kind="image_classification", method=OmegaConf.create(cfg), num_classes=10,
                            input_shape=(1, 8, 8), optim=OmegaConf.create({"name": "adamw", "lr": 0.01,
                                                                           "weight_decay": 0.0}))
    return METHODS.get("fitnets")(student, teachers, context)


def test_the_regressor_is_sized_by_a_dry_run_and_the_models_keep_their_modes():
    student = ARCHS.get("mlp.tiny")(10, (1, 8, 8)).train()
    teacher = ARCHS.get("convnet.base")(10, (1, 8, 8))
    module = fitnets(student, [teacher])
    assert isinstance(module.regressor, nn.Linear)
    assert (module.regressor.in_features, module.regressor.out_features) == (32, 128)  # hidden 32 -> pooled 128
    assert student.training and not teacher.training
    assert any(p is module.regressor.weight for group in module.parameter_groups() for p in group["params"])
    assert not any(key.startswith("regressor") for key in module.student.state_dict())  # dropped after training


def test_feature_maps_of_the_same_size_get_a_1x1_convolution_and_others_a_clear_error():
    conv = make_regressor((16, 4, 4), (64, 4, 4))
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.out_channels == 64
    with pytest.raises(ConfigError, match=r"cannot map student features \[16, 4, 4\] to teacher features \[64, 2, 2\]"):
        make_regressor((16, 4, 4), (64, 2, 2))
    student, teacher = ARCHS.get("mlp.tiny")(10, (1, 8, 8)), ARCHS.get("convnet.base")(10, (1, 8, 8))
    with pytest.raises(ConfigError, match="one teacher"):
        fitnets(student, [teacher, teacher])


def test_losses_on_a_two_example_batch_against_hand_computed_values():
    torch.manual_seed(0)
    student, teacher = ARCHS.get("mlp.tiny")(10, (1, 8, 8)), ARCHS.get("convnet.base")(10, (1, 8, 8))
    module = fitnets(student, [teacher])
    batch = {"inputs": torch.rand(2, 1, 8, 8), "targets": torch.tensor([3, 7]), "index": torch.arange(2)}
    losses = module.losses(batch)
    with torch.no_grad():
        guided = student.features(batch["inputs"])
        hint = teacher.features(batch["inputs"])
        expected = ((module.regressor(guided) - hint) ** 2).sum() / hint.numel()
    assert set(losses) == {"ce", "kd", "hint"} and module.loss_weights() == {"ce": pytest.approx(0.1), "kd": 0.9,
                                                                            "hint": 1.0}
    assert losses["hint"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert hint_loss(hint, hint).item() == 0.0
    losses["hint"].backward()  # the hint term trains the student and the regressor, never the teacher
    assert student.features[1].weight.grad is not None and module.regressor.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_fitnets_digits_trains_end_to_end(runs):
    from tests.helpers import SMOKE
    from zoo.config import compose
    from zoo.train import train

    _, overrides = SMOKE["image_classification"]
    result = train(compose("fitnets_digits", [*overrides, *runs]), say=lambda *_: None)
    assert result.record.method == "fitnets" and 0.0 <= result.record.metrics["test/acc"] <= 1.0
    assert result.record.teacher_queries["forward_passes"] > 0
