"""Small own nets for the embedded sets (digits, Fashion-MNIST), where timm has nothing this small.

Submodules are named ``features`` and ``head`` so that feature-distillation
methods can hook them by path (e.g. ``features.2``).
"""

import math

from torch import nn

from zoo.errors import ConfigError
from zoo.registry import ARCHS


class MLP(nn.Module):
    def __init__(self, num_classes: int, input_shape: tuple[int, ...], hidden: tuple[int, ...]):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class ConvNet(nn.Module):
    """conv3x3-BN-ReLU blocks, a 2x2 max-pool after each while the map is at least 4 px, global average pool."""

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], channels: tuple[int, ...]):
        super().__init__()
        in_ch, size = input_shape[0], input_shape[-1]
        layers: list[nn.Module] = []
        for out_ch in channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()]
            if size >= 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            in_ch = out_ch
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def _builder(net: type[nn.Module], sizes: tuple[int, ...]):
    def build(num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False) -> nn.Module:
        if pretrained:
            raise ConfigError(f"{net.__name__} {sizes} has no pretrained weights",
                              "set pretrained=false, or give a weights file")
        return net(num_classes, input_shape, sizes)

    return build


# Literal names, so that `zoo list archs` can read them without importing torch.
ARCHS.register("mlp.tiny")(_builder(MLP, (32,)))
ARCHS.register("mlp.small")(_builder(MLP, (128,)))
ARCHS.register("mlp.wide")(_builder(MLP, (512, 512)))
ARCHS.register("convnet.small")(_builder(ConvNet, (16, 32)))
ARCHS.register("convnet.base")(_builder(ConvNet, (32, 64, 128)))
ARCHS.register("convnet.deep")(_builder(ConvNet, (32, 64, 128, 256)))  # a fourth block: a second, different teacher
