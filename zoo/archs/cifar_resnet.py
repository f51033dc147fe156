"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2), as RepDistiller
lays them out: the teachers and students of DisWOT's official code (``resnet8`` ... ``resnet110``).

A 3x3 conv stem, three stages of BasicBlocks at widths (16, 32, 64) and strides (1, 2, 2), global average pool, a
linear classifier: depth 6n + 2 with n blocks per stage. DisWOT's search space S1 varies the depth of each stage on
its own (``mutable_resnet20``), so besides the seven fixed names every (depths, widths) is a name of the family
``cifar_resnet.d<a>-<b>-<c>[.w<x>-<y>-<z>]``: a searched candidate is then an arch name like any other, which a
config, a run record and a model card can carry and ``zoo.archs.create`` can rebuild.

Module paths are part of the contract (feature hooks and DisWOT's relation distance read them): ``body`` is the
trunk up to the last stage's output, the map before global pooling (``body.stem``, ``body.stage1`` ...
``body.stage3``, each stage's blocks ``0``, ``1``, ...), then ``pool`` (average pool + flatten) and ``head``
(the Linear classifier). ReLUs and the residual sum are out of place, so a hook on any inner module keeps the
tensor it saw. Conv init is Kaiming-normal (fan_out, relu) and BN weight 1 / bias 0, as in torchvision's and
RepDistiller's ResNets; the Linear keeps PyTorch's default. No published weights are wired in here.
"""

import re
from collections import OrderedDict

from torch import nn

from zoo.errors import ConfigError, UnknownNameError
from zoo.registry import ARCHS

PREFIX = "cifar_resnet."
PATTERN = "cifar_resnet.d<a>-<b>-<c>[.w<x>-<y>-<z>]"
WIDTHS = (16, 32, 64)
MAX_DEPTH, MAX_WIDTH = 64, 1024  # blocks per stage; channels per stage
_NUMBER = "(0|[1-9][0-9]*)"  # no leading zeros: one net, one name
_NAME = re.compile(rf"cifar_resnet\.d{_NUMBER}-{_NUMBER}-{_NUMBER}(?:\.w{_NUMBER}-{_NUMBER}-{_NUMBER})?")


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU; the shortcut is a 1x1 conv + BN where the shape
    changes (He et al.'s option B, which RepDistiller uses), the identity elsewhere."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.downsample = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class CifarResNet(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple[int, ...], depths: tuple[int, int, int],
                 widths: tuple[int, int, int] = WIDTHS):
        super().__init__()
        if len(depths) != 3 or len(widths) != 3 or min(depths) < 1 or min(widths) < 1:
            raise ConfigError(f"CIFAR ResNet needs 3 depths >= 1 and 3 widths >= 1, got {depths} and {widths}",
                              f"e.g. depths (3, 3, 3) and widths {WIDTHS}: resnet20")
        self.depths, self.widths = tuple(depths), tuple(widths)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["stem"] = nn.Sequential(nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False),
                                       nn.BatchNorm2d(widths[0]), nn.ReLU())
        in_ch = widths[0]
        for i, (depth, width, stride) in enumerate(zip(depths, widths, (1, 2, 2), strict=True), start=1):
            blocks = [BasicBlock(in_ch if b == 0 else width, width, stride if b == 0 else 1) for b in range(depth)]
            layers[f"stage{i}"] = nn.Sequential(*blocks)
            in_ch = width
        self.body = nn.Sequential(layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_ch, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.head(self.pool(self.body(x)))


def family_name(depths: tuple[int, int, int], widths: tuple[int, int, int] = WIDTHS) -> str:
    """The family name of a net: ``cifar_resnet.d3-3-3`` (default widths are left out)."""
    name = PREFIX + "d" + "-".join(map(str, depths))
    return name if tuple(widths) == WIDTHS else name + ".w" + "-".join(map(str, widths))


def _builder(depths: tuple[int, int, int], widths: tuple[int, int, int] = WIDTHS):
    def build(num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False) -> nn.Module:
        if pretrained:
            raise ConfigError(f"{family_name(depths, widths)} has no pretrained weights",
                              "set pretrained=false, or give a weights file")
        return CifarResNet(num_classes, input_shape, depths, widths)

    return build


def parse(name: str):
    """``cifar_resnet.d1-3-7`` or ``cifar_resnet.d5-5-5.w8-16-32`` -> its builder; a one-line error otherwise."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise UnknownNameError(f"unknown arch '{name}': CIFAR ResNet names follow {PATTERN}",
                               "e.g. cifar_resnet.d3-3-3 (resnet20) or cifar_resnet.d1-3-7.w8-16-32; "
                               "blocks per stage a, b, c and widths x, y, z as plain integers")
    numbers = [int(n) for n in match.groups() if n is not None]
    depths, widths = tuple(numbers[:3]), tuple(numbers[3:]) or WIDTHS
    if not all(1 <= d <= MAX_DEPTH for d in depths) or not all(1 <= w <= MAX_WIDTH for w in widths):
        raise UnknownNameError(f"unknown arch '{name}': {PATTERN} takes depths 1..{MAX_DEPTH} "
                               f"and widths 1..{MAX_WIDTH}", "e.g. cifar_resnet.d18-18-18 (resnet110)")
    return _builder(depths, widths)


# Literal names, so that `zoo list archs` can read them without importing torch: depth 6n + 2.
ARCHS.register("resnet8.cifar")(_builder((1, 1, 1)))
ARCHS.register("resnet14.cifar")(_builder((2, 2, 2)))
ARCHS.register("resnet20.cifar")(_builder((3, 3, 3)))
ARCHS.register("resnet32.cifar")(_builder((5, 5, 5)))
ARCHS.register("resnet44.cifar")(_builder((7, 7, 7)))
ARCHS.register("resnet56.cifar")(_builder((9, 9, 9)))
ARCHS.register("resnet110.cifar")(_builder((18, 18, 18)))
ARCHS.register_family(PREFIX, parse, pattern=PATTERN)
