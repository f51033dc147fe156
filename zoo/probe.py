"""Linear probe: how linearly separable a frozen model's features are, the usual judge of label-free pre-training.

The features are the input of the model's ``head`` (a timm ViT: its pooled CLS token; the zoo's small nets: their
last hidden layer). A linear classifier is fitted on the standardised features of the first ``train_size``
training samples (full batch, L-BFGS, a small L2 penalty: deterministic for the same features) and scored on the
validation and test splits. The model is not changed; ``probe_head`` returns the fitted classifier folded into a
``nn.Linear`` on the raw features, which a label-free recipe (MAE) puts in its model's place of an untrained head.

    probe = linear_probe(student, datamodule)          # {"val/probe_acc": ..., "test/probe_acc": ...}
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from zoo.errors import ConfigError

TRAIN_SIZE = 10000      # training samples the classifier is fitted on, unless a caller says otherwise
ITERATIONS = 100        # L-BFGS steps
WEIGHT_DECAY = 1e-4     # L2 penalty on the weights, against separable features' unbounded logits


@dataclass
class Probe:
    metrics: dict[str, float]   # {"val/probe_acc": ..., "test/probe_acc": ...}
    head: nn.Linear             # the classifier on the raw (unstandardised) features


def training_loader(datamodule, size: int | None, batch_size: int) -> DataLoader:
    """The first ``size`` training samples in a fixed order, as evaluation batches; a split served as per-epoch
    random crops gives its epoch-0 crops."""
    dataset = datamodule.splits["train"]
    count = len(dataset) if not size else min(len(dataset), int(size))
    if getattr(dataset, "needs_epoch", False):
        return DataLoader(dataset, batch_size=batch_size, sampler=[(0, i) for i in range(count)],
                          collate_fn=datamodule.collate_fn)
    return DataLoader(Subset(dataset, range(count)), batch_size=batch_size, collate_fn=datamodule.collate_fn)


@torch.no_grad()
def head_inputs(model: nn.Module, loader, limit_batches: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """([n, D] features, [n] targets): what ``model.head`` receives for every sample of ``loader``."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise ConfigError(f"a linear probe reads the input of the model's head, and {type(model).__name__} has no "
                          "'head' module", "probe a ViT or one of the zoo's small nets")
    found: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda module, inputs: found.append(inputs[0].detach().flatten(1)))
    was_training, device = model.training, next(model.parameters()).device
    targets = []
    try:
        model.eval()
        for i, batch in enumerate(loader):
            if limit_batches is not None and i >= limit_batches:
                break
            model(batch["inputs"].to(device))
            targets.append(batch["targets"])
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(found).float(), torch.cat(targets).to(device)  # on the model's device: a GPU fits faster


def fit_classifier(features: torch.Tensor, targets: torch.Tensor, num_classes: int,
                   iterations: int = ITERATIONS, weight_decay: float = WEIGHT_DECAY) -> nn.Linear:
    """Multinomial logistic regression on standardised features, returned as a Linear on the raw features."""
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    standard = (features - mean) / std
    linear = nn.Linear(features.shape[1], num_classes, device=features.device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(standard), targets) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    folded = nn.Linear(features.shape[1], num_classes, device=features.device)
    with torch.no_grad():  # W((f - μ)/σ) + b = (W/σ) f + (b - W μ/σ)
        folded.weight.copy_(linear.weight / std)
        folded.bias.copy_(linear.bias - (linear.weight / std) @ mean)
    return folded


def linear_probe(model: nn.Module, datamodule, train_size: int | None = TRAIN_SIZE, iterations: int = ITERATIONS,
                 limit_batches: int | None = None) -> Probe:
    """The probe of ``model``'s features on ``datamodule`` (see the module docstring); ``limit_batches`` caps every
    split's batches (a smoke run)."""
    batch_size = int(datamodule.cfg.eval_batch_size)
    features, targets = head_inputs(model, training_loader(datamodule, train_size, batch_size), limit_batches)
    head = fit_classifier(features, targets, int(datamodule.num_classes), iterations)
    metrics = {}
    for split in ("val", "test"):
        split_features, split_targets = head_inputs(model, datamodule.eval_loader(split, limit_batches))
        with torch.no_grad():
            correct = (head(split_features).argmax(1) == split_targets).float().mean()
        metrics[f"{split}/probe_acc"] = round(float(correct), 6)
    return Probe(metrics, head.cpu())
