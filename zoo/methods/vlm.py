"""VlmModule: the base of methods whose students are vision-language models (``mimic_kd``, ``preference_distill``,
``vlm_ce``; students from ``zoo.archs.vlm``).

Beyond ``DistillModule`` it holds what they share:

- the stage's loss weights (``method.losses``, names in the method's ``loss_names``; a loss of weight 0 is not
  computed) and its trainable parts (``method.trainable``: parts of ``VisionLanguageModel.set_trainable``, the vision
  tower always frozen), both set per stage by a staged run through the stage's ``method`` block;
- the losses on tensors: next-token cross-entropy and sequence log-likelihoods over the response tokens, with
  logits at position t scored against the label at t + 1 (the shifted form; see ``zoo.methods.mimic_kd``);
- the router's load-balancing loss of an upcycled student, L_moe = c · Σ_layers l_aux (``method.moe_aux_coef`` c,
  ``zoo.archs.moe``);
- validation: the teacher-forced cross-entropy of the validation answers (``val/loss``); the generated answers are
  scored once training is over (``zoo.kinds.visual_qa``).
"""

from typing import Any

import torch
import torch.nn.functional as F

from zoo.archs.moe import moe_aux_loss
from zoo.data.llava_format import IGNORE
from zoo.errors import ConfigError
from zoo.methods.base import DistillModule, MethodContext

DEFAULT_TRAINABLE = ("projector", "lm")


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [n, V], targets [n]) of the response tokens: position t predicts the label at t + 1."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    return logits[:, :-1][keep], targets[keep]


def response_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the response tokens (0 for a batch without any)."""
    chosen, targets = shifted(logits, labels)
    if not len(targets):
        return logits.sum() * 0.0
    return F.cross_entropy(chosen.float(), targets)


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """ℓ(y|x) = Σ_t M_t log π(y_t | x, y_<t) per sample [B]: the log-likelihood of each sample's response."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (picked * keep).sum(dim=1)


class VlmModule(DistillModule):
    kinds = ("visual_qa",)
    default_losses: dict[str, float] = {}

    def __init__(self, student, teachers, context: MethodContext):
        from zoo.archs.vlm import VisionLanguageModel

        super().__init__(student, teachers, context)
        if not isinstance(student, VisionLanguageModel):
            raise ConfigError(f"method '{context.method.name}' trains vision-language students; the student is a "
                              f"{type(student).__name__}", "use a llava-* arch (zoo list archs)")
        cfg = self.method_cfg
        given = cfg.get("losses")
        self.weights = {name: float(v) for name, v in (given.items() if given else self.default_losses.items())}
        unknown = sorted(set(self.weights) - set(self.loss_names))
        if unknown:
            raise ConfigError(f"{cfg.name} has no loss {', '.join(unknown)}",
                              f"losses are {', '.join(self.loss_names)}")
        student.set_trainable(list(cfg.get("trainable") or DEFAULT_TRAINABLE))
        self.aux_coef = float(cfg.get("moe_aux_coef", 0.01))

    def wants(self, name: str) -> bool:
        return self.weights.get(name, 0.0) > 0

    def loss_weights(self) -> dict[str, float]:
        return self.weights

    def batch_size(self, batch: dict[str, Any]) -> int:
        return len(batch["index"])

    def moe_loss(self) -> torch.Tensor | None:
        """c · Σ l_aux of the student's last forward; None for a dense student."""
        aux = moe_aux_loss(self.student)
        return None if aux is None else self.aux_coef * aux

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.student(batch["inputs"])
        self.log("val/loss", response_cross_entropy(out.logits, out.labels), on_epoch=True, prog_bar=True,
                 batch_size=self.batch_size(batch))
