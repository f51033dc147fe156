"""ce: the student trained on labels alone — the no-distillation baseline of every leaderboard.

L = CE(y, s), s the student's logits.
"""

import torch.nn.functional as F

from zoo.methods.classification import ClassificationModule
from zoo.registry import METHODS


@METHODS.register("ce")
class CrossEntropy(ClassificationModule):
    uses_teachers = False

    def losses(self, batch):
        return {"ce": F.cross_entropy(self.student(batch["inputs"]), batch["targets"])}
