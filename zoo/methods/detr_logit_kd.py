"""detr_logit_kd: plain logit distillation for DETRs on Hungarian-matched queries — an ablation arm of
``detr_kitti`` (what CLoCKDistill's consistent GT queries are compared against; Lan & Tian, arXiv
2502.10683, discuss it as the matching-based baseline whose teacher–student pairs are unstable).

Student and teacher decode their own learned queries. Each is matched to the ground truth with the
Hungarian matcher (focal class cost, L1, GIoU; weights 1/5/2 as Deformable DETR); for every GT object j
matched by both, student query σ_S(j) is distilled towards teacher query σ_T(j), on the last decoder
layer (``hungarian_kd_loss`` in ``zoo.methods.clockdistill_losses``):

    L_cls  = mean_j Σ_c BCE(σ(s_{σ_S(j),c}/τ), σ(t_{σ_T(j),c}/τ))        per-class sigmoid (focal heads)
    L_L1   = mean_j ‖b^S_{σ_S(j)} − b^T_{σ_T(j)}‖₁,   L_GIoU = mean_j (1 − GIoU(b^S, b^T))
    L      = L_det(student) + λ_logit · (λ_cls·L_cls + λ_L1·L_L1 + λ_GIoU·L_GIoU)

Switches (``method.*``; choices of ours, not a paper's): ``logit_weight`` λ_logit (1), ``cls_weight``
(1), ``l1_weight`` (5), ``giou_weight`` (2), ``temperature`` τ (1), ``kd_kind`` ("bce", or "kl" =
BCE minus the target's entropy, same gradient). The matching itself uses the matcher's default costs.
"""

from zoo.methods.clockdistill_losses import hungarian_kd_loss
from zoo.methods.detr_common import DetrModule
from zoo.registry import METHODS


@METHODS.register("detr_logit_kd")
class DetrLogitKD(DetrModule):
    uses_teachers = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.method_cfg
        self.temperature, self.kind = float(cfg.temperature), str(cfg.kd_kind)
        scale = float(cfg.logit_weight)
        self.weights = {"det": 1.0, "kd_cls": scale * float(cfg.cls_weight), "kd_l1": scale * float(cfg.l1_weight),
                        "kd_giou": scale * float(cfg.giou_weight)}

    def losses(self, batch):
        student = self.student_forward(batch)
        teacher = self.teacher_forward(batch)
        kd = hungarian_kd_loss(student.logits, student.pred_boxes, teacher.logits, teacher.pred_boxes,
                               batch["targets"], temperature=self.temperature, kind=self.kind)
        return {"det": student.loss, **kd}

    def loss_weights(self):
        return self.weights
