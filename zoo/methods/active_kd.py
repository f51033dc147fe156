"""active_kd: what an active-distillation run (``zoo.active``; RAD) retrains its student with each round.

Robust Active Distillation (Baykal et al., ICLR 2023) trains the student on the labelled set L with hard labels
and on the distilled set D (pool points the teacher was queried on) with the teacher's soft labels:

    L_total = (1/|L|) sum_{x in L} CE(y, s(x)) + w (1/|D|) sum_{x in D} CE_soft(q, s(x)),
    q = softmax(z_T(x) / tau),

with w = ``active.soft_weight`` (1 = the spec's 1:1, its relative weighting being unconfirmed). Batches are drawn
uniformly from L and D together, each sample carrying its weight N/|L| or w N/|D| (N = |L| + |D|), so the mean
over a batch estimates L_total without bias whatever the mix of the batch. The soft labels arrive with the batch
(``soft``, ``distilled``, ``weight``): the teacher is queried by the run, never by this module.
"""

import torch.nn.functional as F

from zoo.methods.classification import ClassificationModule
from zoo.registry import METHODS


@METHODS.register("active_kd")
class ActiveDistillation(ClassificationModule):
    uses_teachers = False  # the run queries the teacher on chosen points; the batch brings its answers
    active_only = True

    def losses(self, batch):
        logits = self.student(batch["inputs"])
        distilled, weight = batch["distilled"], batch["weight"]
        hard = F.cross_entropy(logits, batch["targets"], reduction="none", ignore_index=-1)  # D: labels hidden
        soft = -(batch["soft"] * F.log_softmax(logits, dim=1)).sum(dim=1)
        return {"labels": (weight * hard * ~distilled).mean(), "soft": (weight * soft * distilled).mean()}
