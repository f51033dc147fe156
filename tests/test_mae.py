"""mae (zoo/methods/mae.py): the MIM teacher's recipe method. Its end-to-end run (a recipe teacher, stored, its head a
linear probe) is part of tests/test_hybrid_distill.py's staged runs."""

import pytest
import torch
from omegaconf import OmegaConf

from zoo.archs import create
from zoo.errors import ConfigError
from zoo.methods.base import MethodContext
from zoo.methods.mae import patchify, random_keep
from zoo.probe import fit_classifier
from zoo.registry import METHODS


def mae(**settings):
    torch.manual_seed(0)
    context = MethodContext(kind="image_classification", method=OmegaConf.create({"name": "mae", **settings}),
                            optim=OmegaConf.create({"name": "adamw", "lr": 1e-3, "weight_decay": 0.0}),
                            num_classes=10, input_shape=(1, 28, 28))
    return METHODS.get("mae")(create("vit.mini_p4", 10, (1, 28, 28)), [], context)


def test_an_mae_forward_with_mask_ratio_0_is_the_plain_encoder():
    m, images = mae(), torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        tokens, keep = m.encode(images, mask_ratio=0.0)
        assert keep.tolist() == [list(range(49))] * 3
        assert torch.allclose(tokens, m.encoder.forward_features(images), atol=1e-6)
        hidden_tokens, hidden_keep = m.encode(images)
    assert hidden_keep.shape == (3, 12) and hidden_tokens.shape == (3, 13, 64)  # 75% of 49 hidden, CLS kept


def test_patches_are_in_the_vits_token_order_and_masks_are_uniform_draws():
    images = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    patches = patchify(images, (4, 4))
    assert patches.shape == (2, 49, 16) and torch.equal(patches[0, 8], images[0, 0, 4:8, 4:8].flatten())
    keep = random_keep(1000, 49, 0.75, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(keep.flatten(), minlength=49).float()
    assert keep.shape == (1000, 12) and (keep.diff(dim=1) > 0).all()
    assert counts.min() > 0.5 * counts.mean()  # every patch is visible about as often


def test_the_pixel_loss_is_on_hidden_patches_with_normalised_targets_and_trains_the_decoder():
    m = mae()
    loss = m.losses({"inputs": torch.randn(4, 1, 28, 28)})["pixel"]
    assert loss.item() > 0.5  # an untrained decoder against unit-variance targets
    loss.backward()
    assert m.decoder.mask_token.grad is not None and m.encoder.patch_embed.proj.weight.grad is not None
    targets = m.targets(torch.randn(2, 1, 28, 28))
    assert torch.allclose(targets.mean(-1), torch.zeros(2, 49), atol=1e-5)
    with pytest.raises(ConfigError, match=r"mae: mask_ratio=1.0 must be in \[0, 1\)"):
        mae(mask_ratio=1.0)


def test_the_probe_head_is_the_standardised_classifier_folded_onto_raw_features():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (300,))
    features = torch.randn(300, 5) * torch.tensor([1.0, 10.0, 0.1, 1.0, 1.0]) + 4.0 * torch.nn.functional.one_hot(
        labels, 5).float()
    head = fit_classifier(features, labels, 3, iterations=50)
    assert (head(features).argmax(1) == labels).float().mean() > 0.95
