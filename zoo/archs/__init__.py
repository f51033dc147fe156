"""Teacher and student builders, registered in ARCHS.

Every builder has the signature ``build(num_classes, input_shape, pretrained=False)``
and returns an ``nn.Module`` mapping a batch of inputs to logits. Use
``zoo.archs.create`` rather than calling builders directly.
"""

from zoo.registry import ARCHS


def create(name: str, num_classes: int, input_shape: tuple[int, ...], pretrained: bool = False):
    return ARCHS.get(name)(num_classes=num_classes, input_shape=tuple(input_shape), pretrained=pretrained)


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
