import math
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tests.helpers import has_fashion_mnist, photo_folder
from zoo.methods.base import MethodContext
from zoo.methods.meal_v2 import discriminator_loss, discriminator_widths, make_discriminator, soft_cross_entropy
from zoo.registry import METHODS

METHOD = {"name": "meal_v2", "disc_weight": 1.0, "disc_final_relu": True, "disc_lr": 1e-4,
          "disc_lr_follows_student": False, "label_weight": 0.0}
OPTIM = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "schedule": "step", "milestones": [1],
         "gamma": 0.1, "warmup_epochs": 0}


def softmax(values):
    e = [math.exp(v) for v in values]
    return [v / sum(e) for v in e]


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def module(**method):
    context = MethodContext(kind="image_classification", method=OmegaConf.create({**METHOD, **method}),
                            optim=OmegaConf.create(OPTIM), num_classes=3, input_shape=(4,))
    return METHODS.get("meal_v2")(nn.Linear(4, 3), [nn.Linear(4, 3), nn.Linear(4, 3)], context)


def test_soft_cross_entropy_to_the_mean_of_teacher_softmaxes():
    s, t1, t2 = [1.0, 2.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 0.0]
    target = [(a + b) / 2 for a, b in zip(softmax(t1), softmax(t2), strict=True)]
    expected = -sum(p * math.log(q) for p, q in zip(target, softmax(s), strict=True))
    got = soft_cross_entropy(torch.tensor([s]), torch.tensor([[t1, t2]]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_discriminator_widths_follow_the_official_shrink():
    assert discriminator_widths(1000) == [1000, 125, 15, 2]
    assert discriminator_widths(10) == [10, 2, 2, 2]
    d = make_discriminator(1000)
    assert [m.out_features for m in d if isinstance(m, nn.Linear)] == [125, 15, 2] and isinstance(d[-1], nn.ReLU)
    assert not isinstance(make_discriminator(10, final_relu=False)[-1], nn.ReLU)


def hand_discriminator(final_relu: bool, bias: tuple[float, float]) -> nn.Sequential:
    d = make_discriminator(3, final_relu)  # 3 -> 2 -> 2 -> 2
    linears = [m for m in d if isinstance(m, nn.Linear)]
    with torch.no_grad():
        linears[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        for layer in linears[1:]:
            layer.weight.copy_(torch.eye(2))
        for layer in linears:
            layer.bias.zero_()
        linears[2].bias.copy_(torch.tensor(bias))
    return d


@pytest.mark.parametrize("final_relu", [True, False])
def test_discriminator_bce_against_hand_computed_values(final_relu):
    s = torch.tensor([[1.0, 2.0, 0.0]])
    teachers = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])  # mean raw logits [1.5, 0.5, 0]
    d = hand_discriminator(final_relu, (-3.0, 0.0))
    relu = (lambda x: max(x, 0.0)) if final_relu else (lambda x: x)
    student_out = [relu(1.0 - 3.0), relu(2.0)]   # target [1, 0]
    teacher_out = [relu(1.5 - 3.0), relu(0.5)]   # target [0, 1]
    expected = -(math.log(sigmoid(student_out[0])) + math.log(1 - sigmoid(student_out[1]))
                 + math.log(1 - sigmoid(teacher_out[0])) + math.log(sigmoid(teacher_out[1]))) / 4
    assert discriminator_loss(d, s, teachers).item() == pytest.approx(expected, rel=1e-6)


def test_student_gets_gradient_from_the_discriminator_loss():
    m = module()
    with torch.no_grad():  # positive biases keep every ReLU of D active, so its gradient cannot vanish
        for layer in m.discriminator:
            if isinstance(layer, nn.Linear):
                layer.weight.abs_()
                layer.bias.fill_(5.0)
    batch = {"inputs": torch.randn(8, 4), "targets": torch.randint(0, 3, (8,)), "index": torch.arange(8)}
    losses = m.losses(batch)
    assert set(losses) == {"kd", "disc"} and m.loss_weights()["disc"] == 1.0
    losses["disc"].backward()
    assert m.student.weight.grad is not None and m.student.weight.grad.abs().sum() > 0
    assert all(p.grad is None for t in m.teachers for p in t.parameters())
    assert "ce" in module(label_weight=0.5).losses(batch)


def lrs_after(m, steps: int) -> list[float]:
    m.trainer = SimpleNamespace(estimated_stepping_batches=4, max_epochs=2)
    config = m.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return [group["lr"] for group in optimizer.param_groups]


def test_discriminator_lr_is_its_own_by_default_and_the_students_with_the_official_switch():
    assert [g.get("lr") for g in module().parameter_groups()] == [None, 1e-4]
    assert lrs_after(module(), 0) == pytest.approx([0.1, 1e-4])
    assert lrs_after(module(), 2) == pytest.approx([0.01, 1e-4])  # past the epoch-1 milestone: D stays fixed
    assert lrs_after(module(disc_lr_follows_student=True), 0) == pytest.approx([0.1, 0.1])
    assert lrs_after(module(disc_lr_follows_student=True), 2) == pytest.approx([0.01, 0.01])


def test_discriminator_is_checkpointed_but_not_part_of_the_student():
    m = module()
    keys = m.state_dict().keys()
    assert any(k.startswith("discriminator.") for k in keys)
    assert all(k.startswith(("student.", "discriminator.", "val_acc")) for k in keys)
    assert not any("discriminator" in k for k in m.student.state_dict())


@pytest.mark.skipif(not has_fashion_mnist(), reason="Fashion-MNIST not installed")
def test_mealv2_fashion_mnist_fast_dev_run(runs, tmp_path, zoo_home):
    from safetensors.torch import load_file

    from zoo.archs import create
    from zoo.config import compose
    from zoo.train import train
    from zoo.weights import save_weights

    # Untrained teachers from files: training both by the recipe would double this test's time.
    files = []
    for name in ("convnet.base", "convnet.deep"):
        files.append(tmp_path / f"{name}.safetensors")
        save_weights(create(name, 10, (1, 28, 28)), files[-1])
    cfg = compose("mealv2_fashion_mnist", ["trainer.fast_dev_run=true", "trainer.enable_progress_bar=false",
                                           "teacher.recipe.epochs=1", "data.train_subset=2000",
                                           "student.init_recipe.epochs=1",
                                           f"teacher.weights=[{files[0]},{files[1]}]", *runs])
    result = train(cfg, say=lambda *_: None)
    assert result.record.method == "meal_v2" and 0.0 <= result.record.metrics["test/acc"] <= 1.0
    saved = load_file(result.run_dir / "student.safetensors")
    assert not any("discriminator" in k for k in saved)
    inits = list(zoo_home.glob("student_inits/mlp.wide-*/weights.safetensors"))
    assert len(inits) == 1  # the CE-trained starting point, stored for the other arms and seeds


@pytest.mark.parametrize("store", [False, True], ids=["online_teachers", "soft_label_store"])
def test_mealv2_imagenet_recipe_fast_dev_run_with_tiny_stand_ins(runs, tmp_path, store):
    """The ImageNet task's own recipe and data path, with tiny random resnet18s for the paper's big nets."""
    from zoo.archs import create
    from zoo.config import compose
    from zoo.train import train
    from zoo.weights import save_weights

    photo_folder(tmp_path / "imagenet")
    files = [tmp_path / f"t{i}.safetensors" for i in range(2)]
    for i, path in enumerate(files):
        torch.manual_seed(i)
        save_weights(create("resnet18", 3, (3, 32, 32)), path)
    cfg = compose("mealv2_imagenet", [
        "trainer=cpu", "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false",
        f"data.root={tmp_path / 'imagenet'}", "data.image_size=32", "data.batch_size=4", "data.num_workers=0",
        "student.arch=resnet18", "student.pretrained=false", "teacher.pretrained=false",
        "teacher.arch=[resnet18,resnet18]", f"teacher.weights=[{files[0]},{files[1]}]",
        f"soft_labels.enabled={str(store).lower()}", "soft_labels.top_k=2", *runs])
    assert cfg.optim.lr == 0.01 and cfg.optim.milestones == [100] and cfg.optim.weight_decay == 0.0
    result = train(cfg, say=lambda *_: None)
    queries = result.record.teacher_queries
    assert 0.0 <= result.record.metrics["test/acc"] <= 1.0
    if store:
        assert queries["store_labels_served"] > 0 and queries.get("forward_passes", 0) == 0
    else:
        assert queries["forward_passes"] > 0
