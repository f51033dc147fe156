"""A classifier whose head has S outputs per class: the student of subclass distillation (LELP, its k-means and
oracle references).

``create(name, C, shape, subclasses=S)`` builds arch ``name`` with S·C outputs, class-major (output c·S + s is
subclass s of class c), and wraps it here:

- ``subclass_logits(x)`` -> [B, S·C]: what the distillation loss trains;
- ``forward(x)`` -> [B, C]: logsumexp over each class's S logits, so that softmax(forward(x)) is the class
  probability Σ_s q(c, s | x) of the softmax over all S·C logits. Accuracy, ``zoo eval`` and the ONNX graph
  (``zoo export``) see an ordinary C-way classifier with the subclass sum inside it.
"""

import torch
from torch import nn


class SubclassClassifier(nn.Module):
    def __init__(self, net: nn.Module, num_classes: int, subclasses: int):
        super().__init__()
        self.net, self.num_classes, self.subclasses = net, num_classes, subclasses

    def subclass_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_logits(self.net(x), self.num_classes, self.subclasses)


def group_logits(subclass_logits: torch.Tensor, num_classes: int, subclasses: int) -> torch.Tensor:
    """[B, S·C] class-major subclass logits -> [B, C] class logits (log of each class's summed exp)."""
    return subclass_logits.reshape(-1, num_classes, subclasses).logsumexp(dim=-1)
