"""Classification metrics over a whole split, outside Lightning: exact, on one process."""

import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn
from torch.utils.data import DataLoader


@torch.no_grad()
def evaluate_classifier(models: list[nn.Module], loader: DataLoader, device: torch.device | str = "cpu",
                        prefix: str = "test") -> dict[str, float]:
    """Top-1 accuracy and cross-entropy of one model, or of an ensemble (mean of softmaxes). ``inputs`` are a tensor
    (images) or a dict of tensors (a text's token ids and mask)."""
    for model in models:
        model.to(device).eval()
    correct, loss_sum, count = 0, 0.0, 0
    for batch in loader:
        inputs, targets = move_data_to_device(batch["inputs"], device), batch["targets"].to(device)
        probs = torch.stack([F.softmax(model(inputs).float(), dim=-1) for model in models]).mean(0)
        correct += int((probs.argmax(-1) == targets).sum())
        loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), targets, reduction="sum"))
        count += len(targets)
    return {f"{prefix}/acc": correct / count, f"{prefix}/loss": loss_sum / count}
