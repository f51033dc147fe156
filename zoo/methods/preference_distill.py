"""preference_distill: LLaVA-MoD's preference distillation (Shu et al., ICLR 2025, arXiv 2408.15881; the released
``dpo_trainer.py``): DPO on preference pairs with the dense teacher, not a frozen copy of the student, as the
reference, so that the student learns to prefer the good answer more than the teacher does.

For a prompt x (image and question), chosen answer y_w and rejected answer y_l, with ℓ_θ(y|x) = Σ_t M_t log π_θ(y_t |
x, y_<t) the log-likelihood of the response tokens (student θ = S, frozen teacher θ = T):

    Δ_w = ℓ_S(y_w|x) − ℓ_T(y_w|x),   Δ_l = ℓ_S(y_l|x) − ℓ_T(y_l|x)
    sigmoid (DPO, the paper):  pd = mean_batch −log σ(β (Δ_w − Δ_l))
    kto_pair (the released script's loss_type):
        KL_w = max(0, mean_batch Δ_w),  KL_l = max(0, mean_batch Δ_l)
        pd = mean over [1 − σ(β (Δ_w − KL_l)), 1 − σ(β (KL_w − Δ_l))]   (both halves of the batch)
    moe = c · (Σ l_aux on the chosen forward + Σ l_aux on the rejected forward)   (an upcycled student)
    L   = w_pd · pd + w_moe · moe

β = 0.1 (the trainer's default; the script passes none), no SFT term. Because the reference is the teacher, Δ_w and
Δ_l do not start at 0 and the loss does not start at log 2. ``loss_type`` picks the form (``sigmoid`` for the
paper's variant, ``kto_pair`` for the released script's); the staged run's record keeps the stage's method block,
so which one ran is in it. Chosen and rejected pass through the student as two forwards, whose router losses add
(the spec's L_moe(chosen) + L_moe(rejected)). Logged on logging steps: ``train/reward_acc``, the share of pairs with
Δ_w > Δ_l.
"""

import torch
import torch.nn.functional as F

from zoo.errors import ConfigError
from zoo.methods.vlm import VlmModule, sequence_logprob
from zoo.registry import METHODS

LOSSES = ("pd", "moe")
LOSS_TYPES = ("sigmoid", "kto_pair")


def preference_loss(delta_chosen: torch.Tensor, delta_rejected: torch.Tensor, beta: float,
                    loss_type: str) -> torch.Tensor:
    """``pd`` of the module docstring from the per-pair log-ratios Δ_w, Δ_l [B] against the reference."""
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * (delta_chosen - delta_rejected)).mean()
    if loss_type == "kto_pair":
        kl_chosen = delta_chosen.mean().clamp_min(0).detach()
        kl_rejected = delta_rejected.mean().clamp_min(0).detach()
        losses = torch.cat([1 - torch.sigmoid(beta * (delta_chosen - kl_rejected)),
                            1 - torch.sigmoid(beta * (kl_chosen - delta_rejected))])
        return losses.mean()
    raise ConfigError(f"method.loss_type={loss_type}", f"one of {', '.join(LOSS_TYPES)}")


@METHODS.register("preference_distill")
class PreferenceDistill(VlmModule):
    loss_names = LOSSES
    default_losses = {"pd": 1.0, "moe": 1.0}

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        from zoo.methods.mimic_kd import check_vocabularies

        missing = [key for key in ("loss_type", "beta") if self.method_cfg.get(key) is None]
        if missing:  # no default: the record must say which loss ran (a stage names them in its method block)
            raise ConfigError(f"preference_distill needs method.{' and method.'.join(missing)}",
                              "e.g. a stage's method: {name: preference_distill, loss_type: sigmoid, beta: 0.1}")
        self.loss_type, self.beta = str(self.method_cfg.loss_type), float(self.method_cfg.beta)
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(f"method.loss_type={self.loss_type}", f"one of {', '.join(LOSS_TYPES)}")
        if len(self.teachers) != 1:
            raise ConfigError("preference_distill takes one teacher, the reference model", "give one teacher arch")
        check_vocabularies(student, self.teachers[0], None)

    def losses(self, batch):
        for key in ("chosen", "rejected"):
            if key not in batch:
                raise ConfigError("preference_distill trains on preference pairs, and this stage's data has none",
                                  "give the stage preference data (e.g. data: preference, an rlaif_v block)")
        student_ll, aux = {}, []
        for key in ("chosen", "rejected"):
            out = self.student(batch[key])
            student_ll[key] = sequence_logprob(out.logits, out.labels)
            moe = self.moe_loss()
            if moe is not None:
                aux.append(moe)
        with torch.no_grad():
            teacher_ll = {}
            for key in ("chosen", "rejected"):
                out = self.teachers[0](batch[key])
                teacher_ll[key] = sequence_logprob(out.logits, out.labels)
        self.count_teacher_calls(2, 2 * self.batch_size(batch))
        delta_w = student_ll["chosen"] - teacher_ll["chosen"]
        delta_l = student_ll["rejected"] - teacher_ll["rejected"]
        losses = {"pd": preference_loss(delta_w, delta_l, self.beta, self.loss_type)}
        if aux and self.wants("moe"):
            losses["moe"] = torch.stack(aux).sum()
        self.reward_acc = (delta_w > delta_l).float().mean().detach()
        return losses

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/reward_acc", self.reward_acc, batch_size=self.batch_size(batch))
        return loss
