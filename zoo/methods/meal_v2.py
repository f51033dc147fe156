"""meal_v2: Shen & Savvides, "MEAL V2: Boosting Vanilla ResNet-50 to 80%+ Top-1 Accuracy on
ImageNet without Tricks" (arXiv 2009.08453, 2020). Official code: github.com/szq0214/MEAL-V2.

K frozen teachers with logits t_k; student logits s; temperature 1 throughout.

    p_T  = (1/K) Σ_k softmax(t_k)                       mean of the teachers' softmaxes (the only target)
    t̄    = (1/K) Σ_k t_k                                 mean of the teachers' RAW logits (the D input)
    L_KD = -(1/B) Σ_b Σ_c p_T[b,c] · log softmax(s)[b,c]  soft cross-entropy (= KL(p_T ‖ p_S) + const)
    L_D  = BCEWithLogits( D([s; t̄]), [[1,0]]*B + [[0,1]]*B ), mean over all 2B×2 entries
    L    = L_KD + λ_D · L_D  (+ λ_y · CE(y, s) only if ``method.label_weight`` > 0; the paper has none)

s is not detached in L_D, so the student also gets the discriminator's gradient (no
gradient reversal, no separate generator term: the paper's KD loss plays that role and D
is a regulariser). Student and D are updated together by one optimiser step.

Discriminator D (official ``models/discriminator.py``: three 1x1 convs = linear layers, shrink
factor 8, bias everywhere, a ReLU after every layer including the last):
    C -> h1 -> ReLU -> h2 -> ReLU -> 2 -> ReLU,  h1 = max(2, C // 8), h2 = max(2, h1 // 8)
For C = 1000 this is exactly the official 1000 -> 125 -> 15 -> 2; the max(2, ·) floor only
matters for small C (C = 10 gives 10 -> 2 -> 2 -> 2). D is a submodule, so it is in the
Lightning checkpoint (resume keeps it) but not in student.safetensors (train.py saves
``self.student`` alone).

Switches (config ``method.*``):
- ``disc_weight`` λ_D (1.0, the code's value).
- ``disc_final_relu`` (true = the code): the ReLU after D's last layer, which makes the
  "logits" fed to BCE-with-logits non-negative. Kept because the code has it; whether it is
  intended is unconfirmed.
- ``disc_lr`` (1e-4, the code's ``--d_lr``) and ``disc_lr_follows_student`` (false). The
  released code overwrote every param group's lr each epoch, so D actually trained at the
  student's lr (acknowledged as unintentional in issue #9); ``true`` reproduces that, D then
  following the student's lr and schedule. With ``false`` D keeps a fixed lr ``disc_lr``
  (no warm-up, no decay): a re-implementer reported D diverging under per-step schedules
  unless its lr stays low (issue #9). Fixed rather than scheduled is our reading (unconfirmed).
- ``label_weight`` λ_y (0.0): hard-label CE, off as in the paper; the spec warns against it.
"""

import torch
import torch.nn.functional as F
from torch import nn

from zoo.methods.classification import ClassificationModule
from zoo.registry import METHODS


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """-(1/B) Σ p_T · log softmax(s), p_T the mean of the teachers' softmaxes at T = 1.

    teacher_logits is [B, C] or [B, K, C] (K teachers).
    """
    if teacher_logits.dim() == 2:
        teacher_logits = teacher_logits.unsqueeze(1)
    with torch.no_grad():
        target = F.softmax(teacher_logits.float(), dim=-1).mean(dim=1)
    return -(target * F.log_softmax(student_logits.float(), dim=-1)).sum(dim=-1).mean()


def discriminator_widths(num_classes: int, shrink: int = 8) -> list[int]:
    """Layer widths of D: C -> max(2, C//8) -> max(2, that//8) -> 2 (1000 -> 125 -> 15 -> 2)."""
    h1 = max(2, num_classes // shrink)
    return [num_classes, h1, max(2, h1 // shrink), 2]


def make_discriminator(num_classes: int, final_relu: bool = True) -> nn.Sequential:
    widths = discriminator_widths(num_classes)
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(widths) - 2 or final_relu:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def discriminator_loss(discriminator: nn.Module, student_logits: torch.Tensor,
                       teacher_logits: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits of D on [student rows; mean-teacher-logit rows], targets [1,0] / [0,1].

    student_logits is NOT detached; teacher_logits is [B, C] or [B, K, C] (raw logits averaged over K).
    """
    if teacher_logits.dim() == 3:
        teacher_logits = teacher_logits.mean(dim=1)
    batch = student_logits.shape[0]
    inputs = torch.cat([student_logits, teacher_logits.detach().to(student_logits.dtype)], dim=0)
    targets = torch.zeros(2 * batch, 2, device=student_logits.device)
    targets[:batch, 0] = 1.0
    targets[batch:, 1] = 1.0
    return F.binary_cross_entropy_with_logits(discriminator(inputs).float(), targets)


@METHODS.register("meal_v2")
class MealV2(ClassificationModule):
    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg = self.method_cfg
        self.discriminator = make_discriminator(context.num_classes, bool(cfg.get("disc_final_relu", True)))
        self.disc_lr = float(cfg.get("disc_lr", 1e-4))
        self.disc_lr_follows_student = bool(cfg.get("disc_lr_follows_student", False))
        self.label_weight = float(cfg.get("label_weight", 0.0))
        self.weights = {"kd": 1.0, "disc": float(cfg.get("disc_weight", 1.0)), "ce": self.label_weight}

    def losses(self, batch):
        logits = self.student(batch["inputs"])
        teacher_logits = self.teacher_outputs(batch)["logits"]
        losses = {"kd": soft_cross_entropy(logits, teacher_logits),
                  "disc": discriminator_loss(self.discriminator, logits, teacher_logits)}
        if self.label_weight > 0:
            losses["ce"] = F.cross_entropy(logits, batch["targets"])
        return losses

    def loss_weights(self):
        return self.weights

    def parameter_groups(self):
        groups = super().parameter_groups()
        disc = {"params": list(self.discriminator.parameters())}
        if not self.disc_lr_follows_student:
            disc["lr"] = self.disc_lr  # a group's own lr survives the optimiser's default
        return [*groups, disc]

    def lr_factors(self, schedule, num_groups):
        if self.disc_lr_follows_student:
            return super().lr_factors(schedule, num_groups)  # official behaviour: D follows the student's schedule
        return [schedule] * (num_groups - 1) + [lambda step: 1.0]  # D (the last group) keeps disc_lr
