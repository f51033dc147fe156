import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from tests.helpers import SMOKE
from zoo.errors import ConfigError
from zoo.methods.base import MethodContext, lr_lambda
from zoo.methods.hooks import FeatureHooks
from zoo.methods.kd import kd_loss
from zoo.registry import KINDS, METHODS


def test_kd_loss_against_hand_computed_values():
    s = torch.tensor([[1.0, 2.0, 0.0]])
    t = torch.tensor([[3.0, 1.0, 0.0]])
    T = 2.0
    p = [math.exp(v / T) for v in (3.0, 1.0, 0.0)]
    p = [v / sum(p) for v in p]
    q = [math.exp(v / T) for v in (1.0, 2.0, 0.0)]
    q = [v / sum(q) for v in q]
    expected = T * T * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert kd_loss(s, t, T).item() == pytest.approx(expected, rel=1e-6)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_averages_teacher_probabilities():
    s = torch.randn(4, 5)
    t1, t2 = torch.randn(4, 5), torch.randn(4, 5)
    target = (F.softmax(t1, -1) + F.softmax(t2, -1)) / 2
    expected = F.kl_div(F.log_softmax(s, -1), target, reduction="batchmean")
    assert kd_loss(s, torch.stack([t1, t2], 1), 1.0).item() == pytest.approx(expected.item(), rel=1e-6)


def context(method: dict, kind: str = "image_classification") -> MethodContext:
    return MethodContext(kind=kind, method=OmegaConf.create(method), num_classes=3, input_shape=(4,),
                         optim=OmegaConf.create({"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}))


def test_kd_weights_follow_alpha():
    cls = METHODS.get("kd")
    student, teacher = nn.Linear(4, 3), nn.Linear(4, 3)
    module = cls(student, [teacher], context({"name": "kd", "alpha": 0.3, "temperature": 2.0}))
    batch = {"inputs": torch.randn(8, 4), "targets": torch.randint(0, 3, (8,)), "index": torch.arange(8)}
    losses = module.losses(batch)
    assert set(losses) == {"ce", "kd"} and module.loss_weights() == {"ce": 0.7, "kd": 0.3}
    assert module.teacher_calls == {"forward_passes": 1, "samples": 8}


def test_teachers_are_frozen_and_out_of_the_checkpoint():
    cls = METHODS.get("kd")
    teacher = nn.Linear(4, 3)
    module = cls(nn.Linear(4, 3), [teacher], context({"name": "kd", "alpha": 0.5, "temperature": 1.0}))
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert all(key.startswith(("student.", "val_acc")) for key in module.state_dict())


def test_feature_hooks_capture_by_path_and_reject_unknown_paths():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    hooks = FeatureHooks(model, ["1"])
    x = torch.randn(3, 4)
    model(x)
    assert torch.equal(hooks.outputs["1"], torch.relu(model[0](x)))
    hooks.remove()
    with pytest.raises(ConfigError, match="no module '3'"):
        FeatureHooks(model, ["3"])


def test_schedules():
    cosine = lr_lambda(OmegaConf.create({"schedule": "cosine", "warmup_epochs": 1}), total_steps=110,
                       steps_per_epoch=10)
    assert cosine(0) == pytest.approx(0.1) and cosine(10) == pytest.approx(1.0) and cosine(110) == pytest.approx(0)
    step = lr_lambda(OmegaConf.create({"schedule": "step", "milestones": [2, 4], "gamma": 0.1}), 100, 10)
    assert step(19) == 1.0 and step(20) == pytest.approx(0.1) and step(45) == pytest.approx(0.01)
    with pytest.raises(ConfigError):
        lr_lambda(OmegaConf.create({"schedule": "poly"}), 10, 1)


def smoke_kind(method: str) -> str | None:
    """The first kind the method trains on that has a smoke task (tests.helpers.SMOKE)."""
    return next((kind for kind in METHODS.get(method).kinds if kind in SMOKE), None)


# Methods whose smallest end-to-end run needs more than a smoke task: where their own tests run it.
OWN_SMOKE = {"ernie_tiny": "tests/test_ernie_tiny.py (staged runs of tiny BERTs on a small tweets file)",
             "active_kd": "tests/test_active.py (active runs: its batches carry the teacher's answers)",
             **dict.fromkeys(("mimic_kd", "preference_distill", "vlm_ce"),
                             "tests/test_llava_mod.py (staged runs of tiny vision-language models; vlm_ce trains "
                             "their teacher)"),
             "hybrid_distill": "tests/test_hybrid_distill.py (staged runs of tiny ViTs: two teachers, then labels)",
             "mae": "tests/test_hybrid_distill.py (the MIM teacher's recipe of those runs; tests/test_mae.py)"}


def test_every_method_declares_known_kinds_and_has_an_end_to_end_test():
    for method in METHODS.names():
        kinds = METHODS.get(method).kinds
        assert kinds and set(kinds) <= set(KINDS.names()), (method, kinds)
        # retrieval methods need a SPLADE teacher and a Lucene index: tests/test_disco_task.py runs them end to end
        assert smoke_kind(method) is not None or kinds == ("retrieval",) or method in OWN_SMOKE, method


@pytest.mark.parametrize("method", [m for m in METHODS.names() if smoke_kind(m) and m not in OWN_SMOKE])
def test_every_method_runs_fast_dev_run_on_its_kind(method, runs):
    """The smallest task of the method's kind, trained end to end: teacher, student, evaluation, record."""
    from zoo.config import compose
    from zoo.train import train

    kind = smoke_kind(method)
    task, overrides = SMOKE[kind]
    result = train(compose(task, [f"method={method}", *overrides, *runs]), say=lambda *_: None)
    assert result.record.method == method and result.record.data["kind"] == kind
    assert 0.0 <= result.record.metrics[KINDS.get(kind).headline_metric] <= 1.0
    assert (result.run_dir / "student.safetensors").is_file()
    L.seed_everything(0, verbose=False)


def test_a_method_for_active_runs_is_refused_elsewhere_and_the_other_way_round(runs):
    from zoo.config import compose
    from zoo.train import train

    with pytest.raises(ConfigError, match="this task has no active block"):
        train(compose("kd_digits", ["method=active_kd", *runs]), say=lambda *_: None)
    with pytest.raises(ConfigError, match="not 'kd'"):
        train(compose("rad_fashion_mnist", ["method=kd", *runs]), say=lambda *_: None)


def test_a_method_of_another_kind_is_refused_before_any_data_is_read(runs):
    from zoo.config import compose
    from zoo.train import train

    cfg = compose("detr_kitti", ["method=kd", "data.root=/nonexistent", *runs])  # KITTI is not there: not read
    with pytest.raises(ConfigError, match="method 'kd' trains image_classification or text_classification students; "
                                          "this task's data is detection"):
        train(cfg, say=lambda *_: None)
