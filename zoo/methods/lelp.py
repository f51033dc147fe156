"""lelp: Loo, Iliopoulos, Hu & Vee, "Linear Projections of Teacher Embeddings for Few-Class Distillation"
(arXiv 2409.20449).

With C = 2 classes a teacher's softmax carries one number per example. LELP splits every class into S
pseudo-subclasses read off the teacher's final embedding h(x) (the input of its head W) along directions its
classifier does not use, and trains an S·C-way student head on the split distribution:

    u_c(x)       = V_cᵀ (P h(x) − μ_c) / σ_c                      fitted once on the training split
                                                                 (``zoo.methods.lelp_projections``)
    p_T(c, s|x)  = softmax_c(z(x)/τ) · softmax_s(u_c(x)/β)       product form (``target: product``, default)
              or = softmax_{c,s}(z_c(x)/τ + u_{c,s}(x)/β)          one softmax (``target: joint``)
    q(c, s|x)    = softmax_{c,s}(r(x)/τ)                           r: the student's S·C logits
    L            = (1 − α) · τ² · (− Σ_{c,s} p_T(c,s|x) log q(c,s|x)) + α · CE(y, log Σ_s exp r_{c,s}(x))

and predicts argmax_c Σ_s exp r_{c,s}(x) (the student is a ``zoo.archs.subclass_head.SubclassClassifier``; its
forward already sums each class's subclasses, so evaluation and export see a C-way classifier; the method asks for
it through ``student_kwargs``, so any classification task can train with ``method=lelp``).

Reconstructed, not read from code (none was released; see the spec): the formulas above, the τ² factor, the label
term at temperature 1, β applied to standardised projections (σ_c), S directions per class, the null-space
projector's form, PCA on examples grouped by their true label. Switches: ``target`` (product / joint),
``directions`` (``pca``, the method; ``random``: random null-space directions, the paper's ablation; ``kmeans``:
k-means pseudo-subclasses, the paper's clustering baseline; ``oracle``: the data's true hidden classes, a reference
that needs them). The oracle puts the teacher's mass for the true class on the true subclass and spreads the other
classes' mass evenly over their subclasses (a choice of ours: an example's hidden class is known only inside its
own class).

The teacher's embedding is the output of the module at ``teacher_features[0]`` and must be what its head
(``teacher_head``, an ``nn.Linear``) reads: checked on the first batch. One teacher.
"""

import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import nn
from torch.utils.data import DataLoader, Subset

from zoo.archs.subclass_head import SubclassClassifier, group_logits
from zoo.errors import ConfigError
from zoo.methods.classification import ClassificationModule
from zoo.methods.lelp_projections import DIRECTIONS, SubclassMap, fit_subclass_map, load_stored, store, stored_path
from zoo.registry import METHODS

TARGETS = ("product", "joint")
SMOKE_FIT_SAMPLES = 2000  # a fast_dev_run fits on this many examples and stores nothing


def subclass_targets(teacher_logits: torch.Tensor, scores: torch.Tensor, temperature: float,
                     subclass_temperature: float, target: str = "product") -> torch.Tensor:
    """p_T(c, s | x) [B, C·S] (class-major) from teacher logits z [B, C] and subclass scores u [B, C, S]."""
    if target == "product":
        classes = F.softmax(teacher_logits / temperature, dim=-1)
        within = F.softmax(scores / subclass_temperature, dim=-1)
        return (classes.unsqueeze(-1) * within).flatten(1)
    joint = teacher_logits.unsqueeze(-1) / temperature + scores / subclass_temperature
    return F.softmax(joint.flatten(1), dim=-1)


def oracle_scores(labels: torch.Tensor, subclass: torch.Tensor, num_classes: int, subclasses: int) -> torch.Tensor:
    """u [B, C, S] that makes softmax_s one-hot on the true subclass inside the true class and even elsewhere."""
    if int(subclass.max()) >= subclasses:
        raise ConfigError(f"the data hides {int(subclass.max()) + 1} or more subclasses per class, and the oracle "
                          f"was given method.subclasses={subclasses}", "set method.subclasses to the data's count")
    scores = torch.zeros(len(labels), num_classes, subclasses, device=labels.device)
    scores[torch.arange(len(labels)), labels, subclass] = 1e4  # softmax of it is one-hot in float32 for β <= 100
    return scores


def subclass_loss(student_subclass_logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """τ² · (− Σ p_T log q) averaged over the batch, q = softmax(r / τ) over all S·C logits."""
    log_q = F.log_softmax(student_subclass_logits / temperature, dim=-1)
    return -(targets * log_q).sum(dim=-1).mean() * temperature**2


@METHODS.register("lelp")
class LELP(ClassificationModule):
    def __init__(self, student, teachers, context):
        super().__init__(student, teachers, context)
        cfg = self.method_cfg
        self.subclasses = int(cfg.subclasses)
        self.temperature = float(cfg.temperature)
        self.subclass_temperature = float(cfg.subclass_temperature)
        self.target, self.directions = str(cfg.target), str(cfg.directions)
        if self.target not in TARGETS:
            raise ConfigError(f"unknown method.target '{self.target}'", f"one of {', '.join(TARGETS)}")
        if self.directions not in DIRECTIONS:
            raise ConfigError(f"unknown method.directions '{self.directions}'", f"one of {', '.join(DIRECTIONS)}")
        if len(self.teachers) != 1 or len(cfg.teacher_features or []) != 1:
            raise ConfigError("lelp takes one teacher and its embedding as teacher_features: [<module path>]",
                              "give teacher.arch one name and method.teacher_features the module whose output "
                              "the teacher's head reads")
        if not (isinstance(student, SubclassClassifier) and student.subclasses == self.subclasses):
            raise ConfigError(f"lelp trains a student with {self.subclasses} outputs per class",
                              "build it with zoo.students.create_student, which asks the method "
                              f"(zoo.archs.create(..., subclasses={self.subclasses}))")
        self.embedding_path = str(cfg.teacher_features[0])
        self.teacher_head()  # fails now, by name, if there is no head to read
        self.weights = {"subclass": 1.0 - float(cfg.alpha), "ce": float(cfg.alpha)}
        self.subclass_map: SubclassMap | None = None
        self.embedding_checked = False

    @classmethod
    def student_kwargs(cls, method_cfg):
        return {"subclasses": int(method_cfg.subclasses)}

    def teacher_head(self) -> nn.Linear:
        """The teacher's final linear layer, looked up each time: held as an attribute it would become a submodule
        of this module (in its state_dict and checkpoints, like the teachers are not)."""
        path = str(self.method_cfg.teacher_head)
        head = dict(self.teachers[0].named_modules()).get(path)
        if not isinstance(head, nn.Linear):
            raise ConfigError(f"teacher {type(self.teachers[0]).__name__} has no final linear layer at '{path}'",
                              "set method.teacher_head to the module path of its classifier (an nn.Linear)")
        return head

    # -- the subclass map, fitted once per teacher and data ------------------------------------------------------
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.directions != "oracle":
            self.subclass_map = self.fitted_map(self.trainer.datamodule).to(self.device)  # once, not per batch

    def map_key(self, datamodule, samples: int) -> dict:
        from zoo.teacher_cache import teacher_fingerprint

        teacher = self.teachers[0]
        return {"teacher": teacher_fingerprint([type(teacher).__name__], [teacher]), "data": datamodule.fingerprint,
                "transform": str(datamodule.transform_fingerprint), "embedding": self.embedding_path,
                "head": str(self.method_cfg.teacher_head), "subclasses": self.subclasses,
                "directions": self.directions, "seed": int(self.method_cfg.directions_seed), "samples": samples}

    def fitted_map(self, datamodule) -> SubclassMap:
        from zoo.paths import teacher_outputs_dir

        if datamodule.transform_fingerprint is None:
            raise ConfigError("lelp fits its projections on fixed training inputs, and this run's are random crops",
                              "switch data.augment off for lelp")
        smoke = bool(self.trainer.fast_dev_run)
        train = datamodule.splits["train"]
        samples = min(len(train), int(self.method_cfg.fit_samples), SMOKE_FIT_SAMPLES if smoke else len(train))
        if smoke:  # a smoke run must not leave files behind
            return self.fit_map(datamodule, samples)
        key = self.map_key(datamodule, samples)
        path = stored_path(teacher_outputs_dir() / "lelp", key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            fitted = load_stored(path, key)
            if fitted is None:
                fitted = self.fit_map(datamodule, samples)
                store(path, key, fitted)
        return fitted

    @torch.no_grad()
    def fit_map(self, datamodule, samples: int) -> SubclassMap:
        """Teacher embeddings of ``samples`` training examples (a seeded subset when fewer than all) -> the map."""
        train = datamodule.splits["train"]
        generator = torch.Generator().manual_seed(int(self.method_cfg.directions_seed))
        chosen = torch.randperm(len(train), generator=generator)[:samples].sort().values.tolist()
        loader = DataLoader(Subset(train, chosen), batch_size=int(datamodule.cfg.eval_batch_size), shuffle=False,
                            collate_fn=datamodule.collate_fn)
        embeddings, labels = [], []
        for batch in loader:
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            outputs = self.teacher_outputs(batch)
            embeddings.append(outputs[self.embedding_path][:, 0].cpu())
            labels.append(batch["targets"].cpu())
        return fit_subclass_map(torch.cat(embeddings), torch.cat(labels), self.teacher_head().weight.detach().cpu(),
                                self.subclasses, self.directions, int(self.method_cfg.directions_seed))

    def check_embedding(self, logits: torch.Tensor, embedding: torch.Tensor) -> None:
        """The hooked embedding must be what the head reads: head(h) = z."""
        head = self.teacher_head()
        fits = embedding.dim() == 2 and embedding.shape[1] == head.in_features
        if fits:
            with torch.no_grad():
                recomputed = head(embedding.to(head.weight.dtype)).float()
            fits = recomputed.shape == logits.shape and torch.allclose(recomputed, logits, atol=1e-3, rtol=1e-3)
        if not fits:
            raise ConfigError(f"the teacher's output at '{self.embedding_path}' is not what its head "
                              f"'{self.method_cfg.teacher_head}' reads", "set method.teacher_features to the module "
                              "whose output is the input of the teacher's final linear layer")
        self.embedding_checked = True

    # -- training ------------------------------------------------------------------------------------------------
    def teacher_outputs(self, batch):
        outputs = super().teacher_outputs(batch)
        if not self.embedding_checked:
            self.check_embedding(outputs["logits"][:, 0], outputs[self.embedding_path][:, 0])
        return outputs

    def targets(self, batch) -> torch.Tensor:
        teacher = self.teacher_outputs(batch)
        logits = teacher["logits"][:, 0]
        if self.directions == "oracle":
            if "subclass" not in batch:
                raise ConfigError("lelp's oracle needs the data's hidden subclasses, and this data has none",
                                  "use it on data that serves them (fashion_mnist with data.labels=parity)")
            scores = oracle_scores(batch["targets"], batch["subclass"], logits.shape[-1], self.subclasses)
        else:
            scores = self.subclass_map.scores(teacher[self.embedding_path][:, 0])
        return subclass_targets(logits, scores, self.temperature, self.subclass_temperature, self.target)

    def losses(self, batch):
        subclass_logits = self.student.subclass_logits(batch["inputs"])
        class_logits = group_logits(subclass_logits, self.student.num_classes, self.subclasses)
        return {"subclass": subclass_loss(subclass_logits, self.targets(batch), self.temperature),
                "ce": F.cross_entropy(class_logits, batch["targets"])}

    def loss_weights(self):
        return self.weights
