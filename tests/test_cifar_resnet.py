"""CIFAR ResNets (zoo.archs.cifar_resnet): fixed names, the depth/width family, shapes, sizes and module paths."""

import pytest
import torch

from zoo.archs import count_flops, count_params, create
from zoo.archs.cifar_resnet import PATTERN, family_name
from zoo.errors import ConfigError, UnknownNameError
from zoo.registry import ARCHS


def expected_params(depths, widths=(16, 32, 64), num_classes=100, in_ch=3) -> int:
    """He et al.'s CIFAR ResNet counted by hand. Stem: conv 3x3 in_ch -> w1 (in_ch*w1*9) + BN (2*w1). A BasicBlock
    c -> w: two 3x3 convs (c*w*9 + w*w*9) and two BNs (4*w), plus a 1x1 conv + BN (c*w + 2*w) where c != w or it
    strides (the first block of stages 2 and 3). Head: Linear w3 -> classes (w3*classes + classes)."""
    total, c = in_ch * widths[0] * 9 + 2 * widths[0], widths[0]
    for stage, (depth, w) in enumerate(zip(depths, widths, strict=True)):
        for block in range(depth):
            total += c * w * 9 + w * w * 9 + 4 * w
            if block == 0 and (stage > 0 or c != w):
                total += c * w + 2 * w
            c = w
    return total + c * num_classes + num_classes


def test_resnet20_and_56_have_repdistillers_sizes():
    # resnet20, 100 classes: stem 3*16*9 + 32 = 464; stage 1: 3 * (2*16*16*9 + 64) = 14,016; stage 2: first block
    # 16*32*9 + 32*32*9 + 128 + (16*32 + 64) = 14,528, two more 2 * (2*32*32*9 + 128) = 37,120; stage 3: first block
    # 32*64*9 + 64*64*9 + 256 + (32*64 + 128) = 57,728, two more 2 * (2*64*64*9 + 256) = 147,968; head 64*100 + 100
    # = 6,500. Sum 278,324: RepDistiller's "0.28M".
    assert count_params(create("resnet20.cifar", 100, (3, 32, 32))) == expected_params((3, 3, 3)) == 278_324
    resnet56 = count_params(create("resnet56.cifar", 100, (3, 32, 32)))
    assert resnet56 == expected_params((9, 9, 9)) == 861_620  # RepDistiller's "0.86M"
    assert count_params(create("cifar_resnet.d1-3-7.w8-16-32", 10, (1, 28, 28))) == expected_params(
        (1, 3, 7), (8, 16, 32), 10, in_ch=1)


@pytest.mark.parametrize("name, shape", [("resnet8.cifar", (3, 32, 32)), ("resnet14.cifar", (1, 8, 8)),
                                         ("cifar_resnet.d1-2-1.w8-16-32", (1, 28, 28))])
def test_logits_and_pre_pool_map_shapes(name, shape):
    net = create(name, 7, shape).eval()
    x = torch.randn(2, *shape)
    width = net.head.in_features
    quarter = tuple(-(-side // 4) for side in shape[1:])  # two stride-2 stages: ceil(side / 4)
    with torch.no_grad():
        assert net(x).shape == (2, 7)
        assert net.body(x).shape == (2, width, *quarter)
        assert torch.equal(net.head(net.pool(net.body(x))), net(x))
    if shape == (3, 32, 32):
        assert quarter == (8, 8) and width == 64
    paths = dict(net.named_modules())
    assert {"body", "body.stem", "body.stage1", "body.stage2", "body.stage3", "pool", "head"} <= set(paths)
    assert isinstance(paths["head"], torch.nn.Linear) and isinstance(paths["pool"][0], torch.nn.AdaptiveAvgPool2d)


def test_fixed_name_and_family_member_build_the_same_net():
    fixed, member = create("resnet20.cifar", 10, (3, 32, 32)), create("cifar_resnet.d3-3-3", 10, (3, 32, 32))
    assert {k: v.shape for k, v in fixed.state_dict().items()} == {k: v.shape for k, v in member.state_dict().items()}
    explicit = create("cifar_resnet.d3-3-3.w16-32-64", 10, (3, 32, 32))
    assert [v.shape for v in explicit.state_dict().values()] == [v.shape for v in fixed.state_dict().values()]
    torch.manual_seed(0)
    a = create("cifar_resnet.d1-1-1", 10, (3, 32, 32)).state_dict()
    torch.manual_seed(0)
    b = create("cifar_resnet.d1-1-1", 10, (3, 32, 32)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_family_names_parse_and_round_trip():
    net = create("cifar_resnet.d1-3-7", 10, (3, 32, 32))
    assert (net.depths, net.widths) == ((1, 3, 7), (16, 32, 64))
    assert [len(net.body[i]) for i in (1, 2, 3)] == [1, 3, 7]
    net = create("cifar_resnet.d5-5-5.w8-16-32", 10, (3, 32, 32))
    assert (net.depths, net.widths) == ((5, 5, 5), (8, 16, 32))
    assert family_name((1, 3, 7)) == "cifar_resnet.d1-3-7"
    assert family_name((5, 5, 5), (8, 16, 32)) == "cifar_resnet.d5-5-5.w8-16-32"


@pytest.mark.parametrize("name", ["cifar_resnet.d1-x-3", "cifar_resnet.d1-3", "cifar_resnet.d1-3-7.w8-16",
                                  "cifar_resnet.d01-3-7", "cifar_resnet.d1-3-7.", "cifar_resnet.d1-3-7x",
                                  "cifar_resnet.", "cifar_resnet.d0-3-3", "cifar_resnet.d65-1-1",
                                  "cifar_resnet.d3-3-3.w0-16-32", "cifar_resnet.d3-3-3.w8-16-1025"])
def test_malformed_or_out_of_bounds_names_are_one_line_errors(name):
    with pytest.raises(UnknownNameError) as err:
        ARCHS.get(name)
    message = str(err.value)
    assert "\n" not in message and "\n" not in err.value.hint
    assert f"'{name}'" in message and PATTERN in message


def test_bounds_are_inclusive():
    assert ARCHS.get("cifar_resnet.d64-1-1") and ARCHS.get("cifar_resnet.d1-1-1.w1-1-1024")


def test_pretrained_is_a_config_error():
    for name in ("resnet20.cifar", "cifar_resnet.d1-3-7"):
        with pytest.raises(ConfigError, match="no pretrained weights"):
            create(name, 10, (3, 32, 32), pretrained=True)


def test_flops_grow_with_depth():
    flops = [count_flops(create(f"cifar_resnet.d{d}-{d}-{d}", 10, (3, 32, 32)), (3, 32, 32)) for d in (1, 2, 3)]
    assert all(isinstance(f, int) and f > 0 for f in flops)
    assert flops[0] < flops[1] < flops[2]
    deeper_last_stage = count_flops(create("cifar_resnet.d1-1-7", 10, (3, 32, 32)), (3, 32, 32))
    assert flops[0] < deeper_last_stage
