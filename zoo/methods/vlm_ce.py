"""vlm_ce: a vision-language model trained alone on its answers (next-token cross-entropy on the response tokens,
plus the router's load balancing if it is a mixture of experts): how the ``visual_qa`` kind trains a teacher by its
recipe, and the labels-only baseline outside a staged run.

    L = ce + moe,   ce and moe as in ``zoo.methods.mimic_kd``
"""

from zoo.methods.mimic_kd import MimicKD
from zoo.registry import METHODS


@METHODS.register("vlm_ce")
class VlmCE(MimicKD):
    uses_teachers = False
    loss_names = ("ce", "moe")
    default_losses = {"ce": 1.0, "moe": 1.0}

    @classmethod
    def needs_teachers(cls, method_cfg) -> bool:
        return False
