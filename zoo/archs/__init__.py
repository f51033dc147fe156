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


def count_flops(model, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs for one sample (2 per multiply-add), by torch's own FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    model.train(was_training)
    return int(counter.get_total_flops())
