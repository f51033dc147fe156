"""Detection metrics: DETR outputs -> detections, and COCO-style mAP with ignore regions as crowd boxes.

Targets are the detection data modules' label dicts (``zoo.data.detection``): normalised (cx, cy, w, h) boxes of
the unpadded image, ``class_labels``, ``orig_size`` (h, w) and ignore regions (``ignore_boxes``, ``ignore_labels``,
-1 = every class). Boxes are scored in pixels of the original image.
"""

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader


def cxcywh_to_xyxy(boxes: torch.Tensor, size: Any) -> torch.Tensor:
    """Normalised (cx, cy, w, h) -> pixel (x1, y1, x2, y2) in an image of ``size`` = (h, w)."""
    h, w = (float(s) for s in size)
    cx, cy, bw, bh = boxes.unbind(-1)
    return torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)


def metric_targets(targets: list[dict[str, Any]], num_classes: int) -> list[dict[str, torch.Tensor]]:
    """Batch targets -> torchmetrics ``MeanAveragePrecision`` targets in pixels of the original image.

    Ignore regions become ``iscrowd`` boxes, which COCO-style matching treats as
    "a detection inside counts neither as hit nor as false positive"; a region for
    every class (-1) is repeated once per class.
    """
    out = []
    for t in targets:
        ignore_labels = t["ignore_labels"]
        everyone = ignore_labels < 0
        ignore_boxes = torch.cat([t["ignore_boxes"][~everyone], t["ignore_boxes"][everyone].repeat(num_classes, 1)])
        ignore_labels = torch.cat([ignore_labels[~everyone],
                                   torch.arange(num_classes).repeat_interleave(int(everyone.sum()))])
        boxes = torch.cat([t["boxes"], ignore_boxes])
        out.append({"boxes": cxcywh_to_xyxy(boxes, t["orig_size"]),
                    "labels": torch.cat([t["class_labels"], ignore_labels]),
                    "iscrowd": torch.cat([torch.zeros(len(t["boxes"]), dtype=torch.long),
                                          torch.ones(len(ignore_boxes), dtype=torch.long)])})
    return out


def detections(probs: torch.Tensor, boxes: torch.Tensor, sizes: torch.Tensor, top_k: int = 100):
    """Sigmoid-focal DETR outputs -> per image {boxes (x1, y1, x2, y2 px), scores, labels}.

    As Deformable DETR's post-processing: the ``top_k`` highest (query, class) sigmoid scores of each
    image, so one query may give several classes. probs [B, Q, C] = sigmoid(logits), boxes [B, Q, 4]
    normalised cxcywh of the unpadded image, sizes [B, 2] (h, w) the pixels to scale them to.
    """
    batch, queries, classes = probs.shape
    scores, flat = probs.reshape(batch, -1).topk(min(top_k, queries * classes), dim=1)
    picked = boxes.gather(1, (flat // classes)[..., None].expand(-1, -1, 4))
    return [{"boxes": cxcywh_to_xyxy(picked[b].float(), sizes[b]), "scores": scores[b].float(),
             "labels": flat[b] % classes} for b in range(batch)]


@torch.no_grad()
def evaluate_detector(model: nn.Module, loader: DataLoader, classes: list[str], device: torch.device | str = "cpu",
                      prefix: str = "test") -> dict[str, float]:
    """COCO-style mAP@[.5:.95], mAP@0.5 and per-class AP of one DETR detector (torchmetrics, pycocotools).

    Ignore regions (KITTI DontCare, COCO iscrowd) enter as crowd boxes, so a detection inside one counts
    neither as hit nor as false positive. A class without any ground truth in the split has no AP (-1 from
    the metric): it is left out.
    """
    from torchmetrics.detection import MeanAveragePrecision

    model = model.to(device).eval()
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
