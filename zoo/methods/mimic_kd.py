"""mimic_kd: LLaVA-MoD's mimic distillation (Shu et al., "LLaVA-MoD: Making LLaVA Tiny via MoE-Knowledge
Distillation", ICLR 2025, arXiv 2408.15881; the released ``align_trainer.py``).

The student π_S imitates the frozen teacher π_T token by token on the response: with x the image and instruction,
y the response and M_t = 1 on the response tokens (labels not -100),

    kd  = (1 / Σ_t M_t) Σ_t M_t Σ_v p_T(v | x, y_<t) · (log p_T(v | x, y_<t) − log p_S(v | x, y_<t))
    ce  = −(1 / Σ_t M_t) Σ_t M_t log p_S(y_t | x, y_<t)
    moe = c · Σ_layers l_aux     (the router's load balancing of an upcycled student, ``zoo.archs.moe``)
    L   = w_kd · kd + w_ce · ce + w_moe · moe

with p = softmax of the logits at temperature 1. ``kd`` is the forward KL(p_T ‖ p_S): the released code minimises the
cross-entropy −Σ_v p_T log p_S, which has the same gradient and is larger by the teacher's entropy; ``kd_form:
cross_entropy`` reports that instead (0 for a student equal to the teacher only in the ``kl`` form).
LLaVA-MoD's stages set the weights: dense→dense ``{kd: 1}`` (``only_kd``), dense teacher→sparse student
``{kd: 1, ce: 1, moe: 1}`` (``kd_lm``); the released trainer adds the model's L_moe a second time, an effective
c = 0.02 there: a stage that wants it sets ``moe: 2`` (the paper task does; the mini task does not).

Choices where the code and a clean port differ (each a switch): logits at t are scored against the label at t + 1
(the shifted form; the released trainer masks with the unshifted labels, one token off, consistently for both
models); ``shared_vocab: N`` compares the first N logits only (151,936 in the paper: Qwen checkpoints pad their
embedding matrices differently), null requires equal vocabularies. Response tokens are matched in order, so
teacher and student may read different numbers of visual tokens. Teacher and student are in eval/train mode as the
base sets them; the tiny decoders have no dropout.
"""

import torch

from zoo.errors import ConfigError
from zoo.methods.vlm import VlmModule, response_cross_entropy, shifted
from zoo.registry import METHODS

LOSSES = ("kd", "ce", "moe")
KD_FORMS = ("kl", "cross_entropy")


def mimic_kd_loss(student_logits: torch.Tensor, student_labels: torch.Tensor, teacher_logits: torch.Tensor,
                  teacher_labels: torch.Tensor, form: str = "kl", shared_vocab: int | None = None) -> torch.Tensor:
    """``kd`` of the module docstring over the response tokens of both models (their labels mark them)."""
    student, _ = shifted(student_logits, student_labels)
    teacher, _ = shifted(teacher_logits, teacher_labels)
    if shared_vocab is not None:
        student, teacher = student[:, :shared_vocab], teacher[:, :shared_vocab]
    if student.shape != teacher.shape:
        raise ConfigError(f"mimic_kd compares {tuple(student.shape)} student logits with {tuple(teacher.shape)} "
                          "teacher logits (response tokens x vocabulary)",
                          "teacher and student must read the same tokens with the same vocabulary")
    if not len(student):
        return student_logits.sum() * 0.0
    log_student = torch.log_softmax(student.float(), dim=-1)
    with torch.no_grad():
        p_teacher = torch.softmax(teacher.float(), dim=-1)
        log_teacher = torch.log_softmax(teacher.float(), dim=-1)
    if form == "kl":
        terms = torch.where(p_teacher > 0, p_teacher * (log_teacher - log_student), 0.0)
    else:  # the released form; entries where log p_S is -inf are zeroed, as its trainer does
        terms = torch.where(torch.isinf(log_student), 0.0, -p_teacher * log_student)
    return terms.sum(dim=-1).mean()


def check_vocabularies(student, teacher, shared_vocab: int | None) -> None:
    """One line when the two models' logits cannot be compared entry by entry."""
    sizes = (student.vocab_size, teacher.vocab_size)
    if shared_vocab is None and sizes[0] != sizes[1]:
        raise ConfigError(f"teacher and student have different vocabularies ({sizes[1]} and {sizes[0]} logits)",
                          "build both on the data's tokenizer, or set method.shared_vocab=N to compare the first N "
                          "logits (the paper: 151936, Qwen2's shared vocabulary)")
    if shared_vocab is not None and min(sizes) < shared_vocab:
        raise ConfigError(f"method.shared_vocab={shared_vocab} but the student has {sizes[0]} logits and the teacher "
                          f"{sizes[1]}", "shared_vocab is at most the smaller vocabulary")


@METHODS.register("mimic_kd")
class MimicKD(VlmModule):
    loss_names = LOSSES
    default_losses = {"kd": 1.0}

    @classmethod
    def needs_teachers(cls, method_cfg) -> bool:
        losses = method_cfg.get("losses") or cls.default_losses
        return float(losses.get("kd", 0.0)) > 0

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg = self.method_cfg
        self.form = str(cfg.get("kd_form", "kl"))
        if self.form not in KD_FORMS:
            raise ConfigError(f"method.kd_form={self.form}", f"one of {', '.join(KD_FORMS)}")
        shared = cfg.get("shared_vocab")
        self.shared_vocab = None if shared is None else int(shared)
        if len(self.teachers) > 1:
            raise ConfigError("mimic_kd learns from one teacher", "give one teacher arch")
        if self.teachers and self.wants("kd"):
            check_vocabularies(student, self.teachers[0], self.shared_vocab)

    def losses(self, batch):
        out = self.student(batch["inputs"])
        losses = {}
        if self.wants("kd"):
            with torch.no_grad():
                teacher = self.teachers[0](batch["inputs"])
            self.count_teacher_calls(1, self.batch_size(batch))
            losses["kd"] = mimic_kd_loss(out.logits, out.labels, teacher.logits, teacher.labels, self.form,
                                         self.shared_vocab)
        if self.wants("ce"):
            losses["ce"] = response_cross_entropy(out.logits, out.labels)
        moe = self.moe_loss() if self.wants("moe") else None
        if moe is not None:
            losses["moe"] = moe
        if not losses:
            raise ConfigError(f"mimic_kd: the losses {self.weights} leave nothing to train this student on",
                              "give kd or ce a weight above 0")
        return losses
