"""ViT archs (zoo/archs/vit.py): sizes, patch checks, tokens with dropped patches, attention taps; and the mean
attention distance read from them (zoo/attention_distance.py)."""

import pytest
import torch

from zoo.archs import count_params, create
from zoo.archs.vit import AttentionTaps, check_patches, vit_tokens
from zoo.attention_distance import attention_distances, mean_distance, mean_entropy, patch_distances, write_png
from zoo.errors import ConfigError
from zoo.records import ModelInfo, Record


def mini(seed: int = 0):
    torch.manual_seed(seed)
    return create("vit.mini_p4", 10, (1, 28, 28)).eval()


def test_the_mini_vit_has_49_patches_and_any_size_comes_from_kwargs():
    model = mini()
    assert model.patch_embed.num_patches == 49 and len(model.blocks) == 4 and model.embed_dim == 64
    assert 150_000 < count_params(model) < 250_000
    wide = create("vit", 3, (3, 32, 32), patch_size=8, embed_dim=48, depth=2, num_heads=3)
    assert wide.patch_embed.num_patches == 16 and wide(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_a_patch_size_that_does_not_divide_the_image_is_one_line():
    with pytest.raises(ConfigError, match=r"vit.mini_p4: patch size 5x5 does not divide the 28x28 image") as err:
        create("vit.mini_p4", 10, (1, 28, 28), patch_size=5)
    assert "\n" not in str(err.value)
    sixteen = create("vit", 10, (1, 32, 32), patch_size=16, embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(ConfigError, match=r"vit_base_patch16_224: patch size 16x16 does not divide the 28x28 image"):
        check_patches(sixteen, (1, 28, 28), "vit_base_patch16_224")  # what the timm-name builders check


def test_unknown_size_kwargs_are_named():
    with pytest.raises(ConfigError, match="takes no kwargs widht"):
        create("vit", 10, (1, 28, 28), widht=64)


def test_tokens_of_every_patch_are_the_plain_encoder_and_dropping_keeps_the_cls_token():
    model, images = mini(), torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(vit_tokens(model, images), model.forward_features(images), atol=1e-6)
        keep = torch.tensor([[0, 5, 48]] * 3)
        tokens = vit_tokens(model, images, keep)
        # the same tokens as the embedded full sequence cut to CLS + those patches, then the blocks
        x = model._pos_embed(model.patch_embed(images))[:, [0, 1, 6, 49]]
        expected = model.norm(model.blocks(x))
    assert tokens.shape == (3, 4, 64) and torch.allclose(tokens, expected, atol=1e-6)


def test_taps_read_the_probabilities_the_block_uses_and_restore_fused_attention():
    model, images = mini(), torch.randn(2, 1, 28, 28)
    fused = model.blocks[1].attn.fused_attn
    with torch.no_grad():
        plain = model(images)
        taps = AttentionTaps(model, [2])
        tapped = model(images)
        attention = model.blocks[1].attn
        x = model.blocks[0](model._pos_embed(model.patch_embed(images)))
        q, k, _ = attention.qkv(model.blocks[1].norm1(x)).reshape(2, 50, 3, 4, 16).permute(2, 0, 3, 1, 4)
        expected = (q @ k.transpose(-1, -2) * attention.scale).softmax(-1)
    assert torch.allclose(plain, tapped, atol=1e-5)  # the unfused path computes the same block
    assert taps.probs[2].shape == (2, 4, 50, 50) and torch.allclose(taps.probs[2], expected, atol=1e-5)
    taps.remove()
    assert model.blocks[1].attn.fused_attn == fused and not taps.probs


def test_mean_attention_distance_by_hand():
    distances = patch_distances((2, 2), (4, 4))  # centres 4 px apart in rows and columns
    assert distances[0, 3] == pytest.approx(32 ** 0.5)
    self_only = torch.eye(5).expand(1, 1, 5, 5)  # CLS + 4 patches, each attends to itself
    assert mean_distance(self_only, distances).tolist() == [0.0]
    uniform = torch.full((1, 1, 5, 5), 0.2)  # the CLS column is cut off and rows re-normalised over the 4 patches
    assert mean_distance(uniform, distances).item() == pytest.approx((4 + 4 + 32 ** 0.5) / 4)
    assert mean_entropy(uniform).item() == pytest.approx(1.0) and mean_entropy(self_only).item() == pytest.approx(0.0)


def test_attention_distances_per_block_and_head_and_a_deterministic_png(tmp_path):
    found = attention_distances(mini(), torch.randn(4, 1, 28, 28))
    assert len(found) == 4 and all(len(heads) == 4 for heads in found)
    assert all(0 < d < 28 * 2 ** 0.5 for heads in found for d in heads)
    record = Record(task="t", run_id="r", method="hybrid_distill", seed=0, student=ModelInfo("vit.mini_p4", 1),
                    teachers=[], metrics={}, teacher_metrics={}, config={}, teacher_queries={}, wall_time_s={},
                    data={}, stages=[{"name": "distil", "diagnostics": {"attention_distance": {"student": found}}}])
    assert write_png(record, tmp_path / "a.png") and write_png(record, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    record.stages = []
    assert not write_png(record, tmp_path / "c.png")
