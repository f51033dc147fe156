"""fitnets: Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep Nets" (ICLR 2015).

The student's guided layer g is taught the teacher's hint layer h through a learned regressor r, on top of
Hinton KD and the labels:

    L = (1 - α) · CE(y, s) + α · T² · KL( softmax(t / T) ‖ softmax(s / T) ) + β · mean( (r(v_g(x)) − u_h(x))² )

s, t: student and teacher logits; v_g, u_h: the student's and the teacher's features at the module paths
``method.student_features[0]`` and ``method.teacher_features[0]`` (forward hooks; the teacher's come through the
teacher-output cache like its logits); r: a linear map for feature vectors, a 1x1 convolution for feature maps of
the same spatial size, sized by a dry run of both models on the task's input shape, trained with the student and
dropped afterwards (it is not part of student.safetensors).

Choices of ours (switches in ``method.*``): the paper trains in two stages (hints alone up to the guided layer,
then KD); this is the common single-stage form, stages = ``hint_weight`` β > 0 from the start. The hint term is
the mean over elements, not the paper's ½·sum, so β does not grow with the feature size. One teacher.
"""

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.methods.classification import ClassificationModule
from zoo.methods.kd import kd_loss
from zoo.registry import METHODS


def make_regressor(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """r from the guided layer's feature shape to the hint layer's (both without the batch axis)."""
    if len(student_shape) == 1 and len(teacher_shape) == 1:
        return nn.Linear(student_shape[0], teacher_shape[0])
    if len(student_shape) == 3 and len(teacher_shape) == 3 and student_shape[1:] == teacher_shape[1:]:
        return nn.Conv2d(student_shape[0], teacher_shape[0], kernel_size=1)
    raise ConfigError(f"FitNets cannot map student features {list(student_shape)} to teacher features "
                      f"{list(teacher_shape)}", "pick a guided and a hint layer that are both vectors, or feature "
                      "maps of the same height and width (method.student_features / teacher_features)")


@METHODS.register("fitnets")
class FitNets(ClassificationModule):
    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg = self.method_cfg
        if len(self.teachers) != 1 or len(cfg.student_features) != 1 or len(cfg.teacher_features) != 1:
            raise ConfigError("fitnets takes one teacher, one guided layer and one hint layer",
                              "give teacher.arch one name and method.student_features / teacher_features one path")
        self.guided, self.hint = str(cfg.student_features[0]), str(cfg.teacher_features[0])
        student_shapes, teacher_shapes = self.feature_shapes()
        self.regressor = make_regressor(student_shapes[self.guided], teacher_shapes[0][self.hint])
        self.temperature = float(cfg.temperature)
        self.weights = {"ce": 1.0 - float(cfg.alpha), "kd": float(cfg.alpha), "hint": float(cfg.hint_weight)}

    def losses(self, batch):
        logits = self.student(batch["inputs"])
        guided = self.student_hooks.outputs[self.guided]
        teacher = self.teacher_outputs(batch)
        return {"ce": F.cross_entropy(logits, batch["targets"]),
                "kd": kd_loss(logits, teacher["logits"], self.temperature),
                "hint": hint_loss(self.regressor(guided), teacher[self.hint][:, 0])}

    def loss_weights(self):
        return self.weights

    def parameter_groups(self):
        return [*super().parameter_groups(), {"params": list(self.regressor.parameters())}]


def hint_loss(regressed: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """mean((r(v_g) − u_h)²) over batch and features; the hint is a target, no gradient flows into it."""
    return F.mse_loss(regressed.float(), hint.detach().float())
