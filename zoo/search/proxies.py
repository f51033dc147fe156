"""Training-free scores of a candidate student: DisWOT's and the baselines it is compared with (higher = better).

DisWOT (Dong, Li, Wei, "DisWOT: Student Architecture Search for Distillation WithOut Training", CVPR 2023; spec
methods/diswot.md, read from the official code) scores a student by how close it is to the teacher on one batch,
both freshly initialised, no training:

- semantic distance. Each net's CE loss on the batch is backpropagated once; G = dCE/dW_head (K x C) of its
  final linear layer plays the Grad-CAM channel weights of each class. Per class k, E_k = g_k g_k^T (C x C), each
  row L2-normalised: d_sem = sum_k ||E_k^T - E_k^S||_F^2 / (C K).
  The code needs teacher and student of one classifier width C. For unequal widths (``unequal_width:
  class_gram``, our reading, unconfirmed) the K x K class relations M = G G^T, rows L2-normalised, are compared
  instead: d_sem = ||M^T - M^S||_F^2 / K^2.
- relation distance (the SP loss of Tung & Mori 2019). F = the feature map before global pooling, flattened to
  B x D; A = F F^T with L2-normalised rows: d_rel = ||A^T - A^S||_F^2 / B^2.
- DisWOT = -(d_sem + d_rel), equal weights (the README's reading; the released searchers use one term at a time:
  ``diswot_sem`` and ``diswot_rel`` are each alone).

Baselines: SynFlow (Tanaka et al. 2020; as a zero-cost proxy, Abdelfattah et al. 2021): parameters replaced by
their absolute values, an all-ones input, in float64 and eval mode, R = sum of the outputs,
score = sum |theta * dR/dtheta|; NWOT (Mellor et al. 2021): binary codes c of every ReLU's units over the batch,
K = sum over ReLUs of (c c^T + (1 - c)(1 - c)^T), score = log |det K|; the parameter count, the FLOPs, and a seeded
random number.

Both nets run in train mode (batch statistics), as the official code runs them; their gradients are zeroed before
and after, and nothing is left hooked.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError, did_you_mean

PROXIES = ("diswot", "diswot_sem", "diswot_rel", "synflow", "nwot", "params", "flops", "random")
UNEQUAL_WIDTH = ("class_gram", "error")


@dataclass(frozen=True)
class Layers:
    """Where a net's parts are, by module path: the feature map before pooling and the final linear layer."""

    feature: str = "body"
    head: str = "head"


def module_at(model: nn.Module, path: str, role: str) -> nn.Module:
    modules = dict(model.named_modules())
    if path not in modules:
        raise ConfigError(f"the {role} has no module '{path}' ({type(model).__name__})",
                          did_you_mean(path, [n for n in modules if n], "module paths"))
    return modules[path]


def head_gradient(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, layers: Layers, role: str,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dCE/dW of the final linear layer, K x C; the feature map before pooling, B x D) from one forward/backward."""
    head = module_at(model, layers.head, role)
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"the {role}'s '{layers.head}' is a {type(head).__name__}, not the linear classifier DisWOT "
                          "reads", "point search.layers.head at the final nn.Linear")
    kept = {}
    handle = module_at(model, layers.feature, role).register_forward_hook(
        lambda module, args, output: kept.__setitem__("map", output))
    try:
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), targets).backward()
        gradient = head.weight.grad.detach().clone()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    return gradient, kept["map"].detach().flatten(1)


def semantic_distance(g_teacher: torch.Tensor, g_student: torch.Tensor, unequal_width: str = "class_gram") -> float:
    """d_sem between two K x C head gradients (see the module docstring)."""
    k, c = g_student.shape
    if g_teacher.shape == g_student.shape:
        def class_maps(g):  # K x C x C, each row of each class's map L2-normalised
            return F.normalize(g.unsqueeze(2) * g.unsqueeze(1), dim=2)

        return float(((class_maps(g_teacher) - class_maps(g_student)) ** 2).sum() / (c * k))
    if unequal_width != "class_gram":
        raise ConfigError(f"teacher and student classifiers read {g_teacher.shape[1]} and {c} channels",
                          "set search.unequal_width=class_gram to compare class relations instead")

    def relations(g):
        return F.normalize(g @ g.T, dim=1)

    return float(((relations(g_teacher) - relations(g_student)) ** 2).sum() / (k * k))


def relation_distance(f_teacher: torch.Tensor, f_student: torch.Tensor) -> float:
    """d_rel between two B x D feature maps (see the module docstring)."""
    def similarity(f):
        return F.normalize(f @ f.T, dim=1)

    b = f_student.shape[0]
    return float(((similarity(f_teacher) - similarity(f_student)) ** 2).sum() / (b * b))


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """SynFlow on a copy of the model (the original keeps its weights and mode)."""
    import copy

    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones(1, *input_shape, dtype=torch.float64)).sum().backward()
    return float(sum((p.detach() * p.grad).abs().sum() for p in net.parameters() if p.grad is not None))


def nwot(model: nn.Module, inputs: torch.Tensor) -> float:
    """NWOT: log |det K| of the batch's binary ReLU codes."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ConfigError(f"NWOT reads nn.ReLU modules and {type(model).__name__} has none")
    codes = []
    handles = [m.register_forward_hook(lambda module, args, output: codes.append((output > 0).flatten(1).double()))
               for m in relus]
    try:
        with torch.no_grad():
            model.train()
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    kernel = sum(c @ c.T + (1 - c) @ (1 - c).T for c in codes)
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else -math.inf


def student_scores(student: nn.Module, teacher_view: tuple[torch.Tensor, torch.Tensor], inputs: torch.Tensor,
                   targets: torch.Tensor, layers: Layers, unequal_width: str = "class_gram") -> dict[str, float]:
    """The proxies that read the student's weights on one batch: DisWOT and its two terms (against the teacher's
    ``head_gradient`` on the same batch), SynFlow and NWOT."""
    g_student, f_student = head_gradient(student, inputs, targets, layers, "student")
    d_sem = semantic_distance(teacher_view[0], g_student, unequal_width)
    d_rel = relation_distance(teacher_view[1], f_student)
    return {"diswot": -(d_sem + d_rel), "diswot_sem": -d_sem, "diswot_rel": -d_rel,
            "synflow": synflow(student, tuple(inputs.shape[1:])), "nwot": nwot(student, inputs)}
