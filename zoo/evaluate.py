"""Plain evaluation loops, outside Lightning: exact metrics over a whole split on one process.

A data module picks its loop (``ZooDataModule.evaluate``): classifier accuracy, or detection mAP.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


@torch.no_grad()
def evaluate_classifier(models: list[nn.Module], loader: DataLoader, device: torch.device | str = "cpu",
                        prefix: str = "test") -> dict[str, float]:
    """Top-1 accuracy and cross-entropy of one model, or of an ensemble (mean of softmaxes)."""
    for model in models:
        model.to(device).eval()
    correct, loss_sum, count = 0, 0.0, 0
    for batch in loader:
        inputs, targets = batch["inputs"].to(device), batch["targets"].to(device)
        probs = torch.stack([F.softmax(model(inputs).float(), dim=-1) for model in models]).mean(0)
        correct += int((probs.argmax(-1) == targets).sum())
        loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), targets, reduction="sum"))
        count += len(targets)
    return {f"{prefix}/acc": correct / count, f"{prefix}/loss": loss_sum / count}


def detections(probs: torch.Tensor, boxes: torch.Tensor, sizes: torch.Tensor, top_k: int = 100):
    """Sigmoid-focal DETR outputs -> per image {boxes (x1, y1, x2, y2 px), scores, labels}.

    As Deformable DETR's post-processing: the ``top_k`` highest (query, class) sigmoid scores of each
    image, so one query may give several classes. probs [B, Q, C] = sigmoid(logits), boxes [B, Q, 4]
    normalised cxcywh of the unpadded image, sizes [B, 2] (h, w) the pixels to scale them to.
    """
    from zoo.data.detection import cxcywh_to_xyxy

    batch, queries, classes = probs.shape
    scores, flat = probs.reshape(batch, -1).topk(min(top_k, queries * classes), dim=1)
    picked = boxes.gather(1, (flat // classes)[..., None].expand(-1, -1, 4))
    return [{"boxes": cxcywh_to_xyxy(picked[b].float(), sizes[b]), "scores": scores[b].float(),
             "labels": flat[b] % classes} for b in range(batch)]


@torch.no_grad()
def evaluate_detector(models: list[nn.Module], loader: DataLoader, classes: list[str],
                      device: torch.device | str = "cpu", prefix: str = "test") -> dict[str, float]:
    """COCO-style mAP@[.5:.95], mAP@0.5 and per-class AP of one DETR detector (torchmetrics, pycocotools).

    Boxes are scored in pixels of the original image; ignore regions (KITTI DontCare, COCO iscrowd)
    enter as crowd boxes, so a detection inside one counts neither as hit nor as false positive.
    A class without any ground truth in the split has no AP (-1 from the metric): it is left out.
    """
    from torchmetrics.detection import MeanAveragePrecision

    from zoo.data.detection import metric_targets
    from zoo.errors import ConfigError

    if len(models) != 1:
        raise ConfigError(f"detection evaluates one model at a time, not an ensemble of {len(models)}",
                          "give detection tasks a single teacher.arch")
    model = models[0].to(device).eval()
    metric = MeanAveragePrecision(iou_type="bbox", class_metrics=True, backend="pycocotools")
    for batch in loader:
        out = model(batch["inputs"].to(device), batch["pixel_mask"].to(device))
        sizes = torch.stack([t["orig_size"] for t in batch["targets"]])
        preds = detections(out.logits.sigmoid().cpu(), out.pred_boxes.cpu(), sizes)
        metric.update(preds, metric_targets(batch["targets"], len(classes)))
    result = metric.compute()
    metrics = {f"{prefix}/map": float(result["map"]), f"{prefix}/map_50": float(result["map_50"])}
    for label, ap in zip(result["classes"].reshape(-1).tolist(), result["map_per_class"].reshape(-1).tolist(),
                         strict=True):
        if ap >= 0:
            metrics[f"{prefix}/ap_{classes[int(label)]}"] = float(ap)
    return metrics


def eval_device(cfg) -> str:
    """Where the evaluation loops run: the trainer's GPU when it has one (a DETR over KITTI val is slow on CPU)."""
    if str(cfg.trainer.accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def headline(datamodule, metrics: dict[str, float]) -> str:
    """The line printed after a run: the data set's headline test metric, else every test metric."""
    key = f"test/{datamodule.headline_metric}"
    if key in metrics:
        return f"{key} {metrics[key]:.4f}"
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("test/"))


def model_flops(model, input_shape: tuple[int, ...]) -> int | None:
    """FLOPs per sample, or None for text models (no fixed input shape: ``input_shape`` is ())."""
    from zoo.archs import count_flops

    return count_flops(model, input_shape) if input_shape else None
