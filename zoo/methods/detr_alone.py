"""detr_alone: the DETR student trained on the ground truth alone — the baseline arm of ``detr_kitti``.

    L = L_det(student) = Σ_ℓ [ λ_cls · L_focal + λ_L1 · L1 + λ_GIoU · (1 − GIoU) ]

L_det is the detector's own Hungarian set loss as Hugging Face transformers computes it for
Deformable DETR / DAB-DETR (Zhu et al., "Deformable DETR", ICLR 2021; Carion et al., "End-to-End
Object Detection with Transformers", ECCV 2020): sigmoid focal loss (α 0.25, γ 2) on the classes,
L1 and GIoU on the boxes of the queries matched to the ground truth, summed over decoder layers
(ℓ) when the model has ``auxiliary_loss`` on (the zoo's DETR archs do). The weights are HF's:
λ_cls = 1 (fixed in transformers 5.24; the original Deformable DETR used 2), λ_L1 and λ_GIoU the
config's ``bbox_loss_coefficient`` (5) and ``giou_loss_coefficient`` (2), settable per arch through
``student.kwargs``, not here.

It is also the recipe method that trains a DETR teacher (``teacher.recipe.method: detr_alone``).
"""

from zoo.methods.detr_common import DetrModule
from zoo.registry import METHODS


@METHODS.register("detr_alone")
class DetrAlone(DetrModule):
    uses_teachers = False

    def losses(self, batch):
        return {"det": self.student_forward(batch).loss}
