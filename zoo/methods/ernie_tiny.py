"""ernie_tiny: Su, Chen, Feng, Liu, Liu, Sun, Tian, Wu & Wang, "ERNIE-Tiny: A Progressive Distillation Framework
for Pretrained Transformer Compression" (arXiv 2106.02241, 2021).

ERNIE-Tiny distils a BERT into a smaller BERT in four stages that change one knob at a time (teacher, data,
objective): GD (pretrained teacher, general text, latent loss) -> GED (fine-tuned teacher) -> TAD (task text) ->
TSD (+ soft and hard labels). The stages are a staged run (``zoo.staged``; ``tasks/stages/ernie_tiny.yaml``): this
module is one stage's objective, and each stage sets its weights in ``losses``.

With student layers m = 1..M, teacher layers n = 1..N and the layer map g(m) (uniform: g(m) = m·N/M):

    latent = MSE(E_S W_e, E_T) + Σ_m MSE(H_S,m W_h, H_T,g(m)) + Σ_m (1/h) Σ_h MSE(A_S,m,h, A_T,g(m),h)
    soft   = − Σ_c softmax(z_T / t)_c · log softmax(z_S / t)_c
    hard   = CE(y, z_S)
    L      = w_latent · latent + w_soft · soft + w_hard · hard

E: embedding-layer outputs, H: hidden states, A: attention scores of each head, z: class logits. Every MSE is
averaged over the real tokens (padding masked: a padded query or key takes no part) and over the dimensions.
W_e and W_h are linear maps of the student's width to the teacher's, learned with the student, kept from stage to
stage and dropped after training (the shipped student is the student alone); with equal widths they are the
identity.

Unconfirmed (the paper's body and code could not be read; the defaults are TinyBERT's, Jiao et al. 2020, and each
is a switch): the three latent parts and their weights of 1 (``latent_parts``); the uniform layer map
(``layer_map: null``; a list names the teacher layer, 1-based, of each student layer); attention compared as pre-softmax
scores QKᵀ/√d (``attention: scores_mse``; ``probs_kl`` compares head-averaged attention probabilities by
KL(teacher ‖ student) per query, which also serves unequal head counts); one W_h shared by all layers; the
soft-label temperature t = 1 with no t² factor (``temperature``). Students and teachers are BERT encoders with a
pooled classifier (``zoo.archs.text.EncoderClassifier`` over a transformers BERT); one teacher per stage.

Cost: in a staged run the teacher's view of each task sample (embeddings, mapped hidden states and scores, logits)
is kept in memory (``TeacherMemory``, up to ``teacher_memory`` samples) and shared by the task stages of that
teacher: it runs once per sample, not once per epoch; the record counts its real passes.
"""

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ConfigError
from zoo.methods.classification import ClassificationModule
from zoo.registry import METHODS

LOSSES = ("latent", "soft", "hard")
LATENT_PARTS = ("embedding", "hidden", "attention")
ATTENTION = ("scores_mse", "probs_kl")


# -- the losses, on tensors ------------------------------------------------------------------------------
def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of [B, L, D] states over the real tokens (``mask`` [B, L], 1 = real) and dimensions."""
    weights = mask.to(student.dtype).unsqueeze(-1)
    return ((student - teacher) ** 2 * weights).sum() / (weights.sum() * student.shape[-1])


def token_pairs(mask: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L]: 1 where both the query and the key are real tokens."""
    mask = mask.float()
    return (mask[:, None, :, None] * mask[:, None, None, :])


def attention_scores_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1/h) Σ_h MSE of [B, h, L, L] attention scores, averaged over the (real query, real key) pairs."""
    pairs = token_pairs(mask).to(student.dtype)
    return ((student - teacher) ** 2 * pairs).sum() / (pairs.sum() * student.shape[1])


def attention_probs_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) of the head-averaged attention probabilities of each real query over the real keys,
    averaged over the real queries; [B, h, L, L] scores, the two head counts may differ."""
    padded_key = mask[:, None, None, :] == 0

    def probabilities(scores: torch.Tensor) -> torch.Tensor:
        return F.softmax(scores.float().masked_fill(padded_key, float("-inf")), dim=-1).mean(dim=1)

    p_student, p_teacher = probabilities(student), probabilities(teacher)
    terms = torch.where(p_teacher > 0, p_teacher * (p_teacher.log() - p_student.clamp_min(1e-12).log()), 0.0)
    queries = mask.float()
    return (terms.sum(-1) * queries).sum() / queries.sum()


def soft_label_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """− Σ_c softmax(z_T/t)_c log softmax(z_S/t)_c, averaged over the batch."""
    targets = F.softmax(teacher_logits / temperature, dim=-1)
    return -(targets * F.log_softmax(student_logits / temperature, dim=-1)).sum(-1).mean()


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """g(m) = m·N/M (1-based), when M divides N."""
    if teacher_layers % student_layers:
        raise ConfigError(f"method.layer_map (uniform): {student_layers} student layers do not divide the teacher's "
                          f"{teacher_layers}", f"give method.layer_map as a list of {student_layers} teacher layers "
                                               f"(1..{teacher_layers})")
    step = teacher_layers // student_layers
    return [step * (m + 1) for m in range(student_layers)]


def layer_map(given, student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher layer (1-based) each student layer learns from: uniform (``None``) or an explicit list that
    fits."""
    if given is None:
        return uniform_layer_map(student_layers, teacher_layers)
    mapping = [int(n) for n in given]
    if len(mapping) != student_layers or not all(1 <= n <= teacher_layers for n in mapping):
        raise ConfigError(f"method.layer_map={mapping} does not fit a {student_layers}-layer student and a "
                          f"{teacher_layers}-layer teacher", f"give {student_layers} teacher layers, each in "
                                                             f"1..{teacher_layers}, or null (uniform)")
    return mapping


# -- a BERT's inner states ----------------------------------------------------------------------------------
class BertStates:
    """Embeddings, hidden states, attention scores of chosen layers and logits of an ``EncoderClassifier`` over a
    transformers BERT. Scores QKᵀ/√d are rebuilt from forward hooks on each chosen layer's query and key maps, so
    any attention implementation (sdpa, eager) serves."""

    def __init__(self, model: nn.Module, role: str):
        from transformers import BertModel

        from zoo.archs.text import EncoderClassifier

        if not (isinstance(model, EncoderClassifier) and isinstance(model.encoder, BertModel)):
            inner = f" over a {type(model.encoder).__name__}" if isinstance(model, EncoderClassifier) else ""
            raise ConfigError(f"ernie_tiny reads the layers of a BERT encoder; the {role} is a "
                              f"{type(model).__name__}{inner}", "use a BERT text arch: bert-*, tinybert-* or "
                                                                "minilm.classifier (zoo list archs)")
        self.model, self.layers = model, list(model.encoder.encoder.layer)
        self.depth = len(self.layers)
        self.width = int(model.encoder.config.hidden_size)
        self.heads = int(self.layers[0].attention.self.num_attention_heads)
        self._projections: dict[int, dict[str, torch.Tensor]] = {}
        self._handles = []

    def watch(self, chosen: list[int]) -> None:
        """Keep the query and key projections of the chosen layers (1-based) at every forward."""
        for n in chosen:
            attention = self.layers[n - 1].attention.self
            for name in ("query", "key"):
                self._handles.append(getattr(attention, name).register_forward_hook(self._keeper(n, name)))

    def _keeper(self, layer: int, name: str):
        def keep(module, inputs, output):
            self._projections.setdefault(layer, {})[name] = output

        return keep

    def scores(self, layer: int) -> torch.Tensor:
        """[B, h, L, L] pre-softmax attention scores of ``layer`` (1-based) at the last forward."""
        attention = self.layers[layer - 1].attention.self
        q, k = (self._projections[layer][name] for name in ("query", "key"))
        batch, length = q.shape[:2]
        q = q.view(batch, length, self.heads, -1).transpose(1, 2)
        k = k.view(batch, length, self.heads, -1).transpose(1, 2)
        return q @ k.transpose(-1, -2) * attention.attention_head_size ** -0.5

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """(hidden states: the embedding output, then each layer's; class logits)."""
        out = self.model.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                 output_hidden_states=True)
        logits = self.model.head(self.model.features(out.last_hidden_state, inputs["attention_mask"]))
        return out.hidden_states, logits


@METHODS.register("ernie_tiny")
class ErnieTiny(ClassificationModule):
    kinds = ("text_classification",)
    loss_names = LOSSES

    @classmethod
    def stage_memory(cls, method_cfg, datamodule) -> "TeacherMemory | None":
        """A store of the teacher's view of each training sample, for the stages of one teacher on ``datamodule``
        (``zoo.staged``): labelled task data up to ``method.teacher_memory`` samples (0: none)."""
        limit = int(method_cfg.get("teacher_memory", 0) or 0)
        labelled = datamodule.num_classes is not None
        return TeacherMemory() if labelled and 0 < len(datamodule.splits["train"]) <= limit else None

    @classmethod
    def needs_teachers(cls, method_cfg) -> bool:
        weights = method_cfg.get("losses") or {}
        return any(float(weights.get(name, 0.0)) > 0 for name in ("latent", "soft"))

    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg = self.method_cfg
        self.weights = {name: float(value) for name, value in (cfg.losses or {}).items()}
        unknown = sorted(set(self.weights) - set(LOSSES))
        if unknown:
            raise ConfigError(f"ernie_tiny has no loss {', '.join(unknown)}", f"losses are {', '.join(LOSSES)}")
        self.parts = {name: float(cfg.latent_parts.get(name, 0.0)) for name in LATENT_PARTS}
        if cfg.attention not in ATTENTION:
            raise ConfigError(f"method.attention={cfg.attention}", f"one of {', '.join(ATTENTION)}")
        if len(self.teachers) > 1:
            raise ConfigError("ernie_tiny learns from one teacher per stage", "give one teacher arch")
        # the staged run's memory of the teacher comes as the context's cache; no teacher-output cache otherwise
        self.memory = context.cache if isinstance(context.cache, TeacherMemory) else None
        self.cache = None
        self.student_states = BertStates(student, "student")
        self.teacher_states = BertStates(self.teachers[0], "teacher") if self.teachers else None
        self.mapping: list[int] = []
        if self.teacher_states is not None and self.weights.get("latent", 0.0) > 0:
            teacher = self.teacher_states
            self.mapping = layer_map(cfg.layer_map, self.student_states.depth, teacher.depth)
            if cfg.attention == "scores_mse" and self.student_states.heads != teacher.heads:
                raise ConfigError(f"attention scores are compared head by head, and the student has "
                                  f"{self.student_states.heads} heads, the teacher {teacher.heads}",
                                  "set method.attention=probs_kl (head-averaged probabilities)")
            self.student_states.watch(list(range(1, self.student_states.depth + 1)))
            teacher.watch(self.mapping)
        # W_e and W_h: the student's width mapped to the teacher's (kept across stages, never shipped)
        width_s = self.student_states.width
        width_t = self.teacher_states.width if self.teacher_states is not None else width_s
        self.embedding_projection = nn.Linear(width_s, width_t) if width_s != width_t else nn.Identity()
        self.hidden_projection = nn.Linear(width_s, width_t) if width_s != width_t else nn.Identity()
        # What this stage's losses do not reach is frozen for the stage (the head in GD, GED and TAD; the projections
        # without the latent loss): it stays as it is, and distributed training sees no parameter without a gradient.
        predicts = self.weights.get("soft", 0.0) > 0 or self.weights.get("hard", 0.0) > 0
        student.head.requires_grad_(predicts)
        for projection in (self.embedding_projection, self.hidden_projection):
            projection.requires_grad_(self.weights.get("latent", 0.0) > 0)

    def close(self) -> None:
        super().close()
        for states in (self.student_states, self.teacher_states):
            if states is not None:
                states.remove()

    def parameter_groups(self):
        own = [p for module in (self.embedding_projection, self.hidden_projection) for p in module.parameters()
               if p.requires_grad]
        return super().parameter_groups() + ([{"params": own}] if own else [])

    def loss_weights(self) -> dict[str, float]:
        return self.weights

    def batch_size(self, batch) -> int:
        return len(batch["inputs"]["input_ids"])  # general text has no targets

    def losses(self, batch):
        inputs, mask = batch["inputs"], batch["inputs"]["attention_mask"]
        wanted = [name for name in LOSSES if self.weights.get(name, 0.0) > 0]
        if "hard" in wanted and "targets" not in batch:
            raise ConfigError("the hard-label loss needs labels, and this stage's data has none",
                              "give the stage labelled data (data: task) or drop 'hard' from its losses")
        student_hidden, student_logits = self.student_states.forward(inputs)
        teacher = self.teacher_view(inputs, batch.get("index")) if "latent" in wanted or "soft" in wanted else None
        losses = {}
        if "latent" in wanted:
            losses["latent"] = self.latent_loss(student_hidden, teacher, mask)
        if "soft" in wanted:
            losses["soft"] = soft_label_loss(student_logits, teacher["logits"], float(self.method_cfg.temperature))
        if "hard" in wanted:
            losses["hard"] = F.cross_entropy(student_logits, batch["targets"])
        return losses

    @torch.no_grad()
    def teacher_view(self, inputs, index) -> dict[str, torch.Tensor]:
        """What the losses read of the teacher: ``embedding`` [B, L, D], ``hidden_<n>`` [B, L, D] and ``scores_<n>``
        [B, h, L, L] of each mapped layer n, ``logits`` [B, C]; from the run's memory of them where it has one
        (``TeacherMemory``), else from a forward pass."""
        memory = self.memory
        length = inputs["input_ids"].shape[1]
        if memory is not None and index is not None:
            stored = memory.lookup(index, length)
            if stored is not None:
                return {name: value.to(self.device) for name, value in stored.items()}
        hidden, logits = self.teacher_states.forward(inputs)
        self.count_teacher_calls(1, len(logits))
        view = {"embedding": hidden[0], "logits": logits.float()}
        for n in self.mapping:
            view[f"hidden_{n}"], view[f"scores_{n}"] = hidden[n], self.teacher_states.scores(n)
        if memory is not None and index is not None:
            memory.store(index, view, inputs["attention_mask"])
        return view

    def latent_loss(self, student_hidden, teacher: dict[str, torch.Tensor], mask) -> torch.Tensor:
        compare = attention_scores_mse if self.method_cfg.attention == "scores_mse" else attention_probs_kl
        total = self.parts["embedding"] * masked_mse(self.embedding_projection(student_hidden[0]),
                                                     teacher["embedding"], mask)
        for m, n in enumerate(self.mapping, start=1):
            total = total + self.parts["hidden"] * masked_mse(self.hidden_projection(student_hidden[m]),
                                                              teacher[f"hidden_{n}"], mask)
            total = total + self.parts["attention"] * compare(self.student_states.scores(m),
                                                              teacher[f"scores_{n}"], mask)
        return total


class TeacherMemory:
    """A staged run's in-memory store of one teacher's view of each sample of one labelled data set, so that the
    task stages (TAD, TSD), whose frozen teacher in eval mode sees the same tweets every epoch, run it once per
    sample instead of once per epoch. Rows are kept at each sample's own length (padding cut off) and padded back to
    the batch's length with zeros, which the losses mask; the record's teacher passes count only real ones."""

    def __init__(self):
        self.rows: dict[int, dict[str, torch.Tensor]] = {}

    def store(self, index: torch.Tensor, view: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        lengths = mask.sum(1).tolist()
        for row, (i, n) in enumerate(zip(index.tolist(), lengths, strict=True)):
            self.rows[i] = {name: crop(value[row], n, name).detach().cpu() for name, value in view.items()}

    def lookup(self, index: torch.Tensor, length: int) -> dict[str, torch.Tensor] | None:
        rows = [self.rows.get(i) for i in index.tolist()]
        if any(row is None for row in rows):
            return None
        return {name: torch.stack([pad(row[name], length, name) for row in rows]) for name in rows[0]}


def crop(value: torch.Tensor, n: int, name: str) -> torch.Tensor:
    """One sample's tensor without its padding: tokens are the first axis of states, the last two of scores."""
    if name == "logits":
        return value.clone()
    return value[:, :n, :n].clone() if name.startswith("scores") else value[:n].clone()


def pad(value: torch.Tensor, length: int, name: str) -> torch.Tensor:
    """``crop`` undone with zeros, to the batch's ``length``."""
    if name == "logits":
        return value
    extra = length - value.shape[-1 if name.startswith("scores") else 0]
    if name.startswith("scores"):
        return F.pad(value, (0, extra, 0, extra))
    return F.pad(value, (0, 0, 0, extra))
