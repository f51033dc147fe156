"""kd: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

    L = (1 - α) · CE(y, s) + α · T² · KL( softmax(t / T) ‖ softmax(s / T) )

s, t: student and teacher logits; T: temperature; the T² keeps the soft term's
gradient scale independent of T. With several teachers, the target is the mean
of their softened distributions. α (``method.alpha``) and T
(``method.temperature``) come from the config.
"""

import torch
import torch.nn.functional as F

from zoo.methods.classification import ClassificationModule
from zoo.registry import METHODS


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(p_t ‖ p_s) at temperature T, averaged over the batch.

    teacher_logits is [B, C] or [B, K, C] (K teachers, probabilities averaged).
    """
    if teacher_logits.dim() == 2:
        teacher_logits = teacher_logits.unsqueeze(1)
    with torch.no_grad():  # the target carries no gradient: keep it out of the autograd graph
        target = F.softmax(teacher_logits / temperature, dim=-1).mean(dim=1)
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(log_student, target, reduction="batchmean") * temperature**2


@METHODS.register("kd")
class KnowledgeDistillation(ClassificationModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read once: an OmegaConf lookup per step is measurable on small students.
        self.temperature = float(self.method_cfg.temperature)
        self.weights = {"ce": 1.0 - float(self.method_cfg.alpha), "kd": float(self.method_cfg.alpha)}

    def losses(self, batch):
        logits = self.student(batch["inputs"])
        teacher_logits = self.teacher_outputs(batch)["logits"]
        return {"ce": F.cross_entropy(logits, batch["targets"]),
                "kd": kd_loss(logits, teacher_logits, self.temperature)}

    def loss_weights(self):
        return self.weights
