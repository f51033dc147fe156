"""Classification metrics over a whole split, outside Lightning: exact, on one process."""

import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn
from torch.utils.data import DataLoader


@torch.no_grad()
def evaluate_classifier(models: list[nn.Module], loader: DataLoader, device: torch.device | str = "cpu",
                        prefix: str = "test", macro_f1: bool = False) -> dict[str, float]:
    """Top-1 accuracy and cross-entropy of one model, or of an ensemble (mean of softmaxes), and with ``macro_f1``
    the unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN) (a class neither predicted nor present counts
    0). ``inputs`` are a tensor (images) or a dict of tensors (a text's token ids and mask)."""
    for model in models:
        model.to(device).eval()
    correct, loss_sum, count = 0, 0.0, 0
    true_pos = predicted = actual = None
    for batch in loader:
        inputs, targets = move_data_to_device(batch["inputs"], device), batch["targets"].to(device)
        probs = torch.stack([F.softmax(model(inputs).float(), dim=-1) for model in models]).mean(0)
        correct += int((probs.argmax(-1) == targets).sum())
        loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), targets, reduction="sum"))
        count += len(targets)
        if macro_f1:
            classes = probs.shape[-1]
            if true_pos is None:
                true_pos, predicted, actual = (torch.zeros(classes, dtype=torch.long, device=device) for _ in range(3))
            hits = probs.argmax(-1)
            true_pos += torch.bincount(targets[hits == targets], minlength=classes)
            predicted += torch.bincount(hits, minlength=classes)
            actual += torch.bincount(targets, minlength=classes)
    metrics = {f"{prefix}/acc": correct / count, f"{prefix}/loss": loss_sum / count}
    if macro_f1:
        f1 = (2 * true_pos).float() / (predicted + actual).clamp_min(1).float()
        metrics[f"{prefix}/macro_f1"] = float(f1.mean())
    return metrics
