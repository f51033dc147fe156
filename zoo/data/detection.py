"""Shared pieces of the detection data modules (KITTI, COCO, the KITTI mini set).

A reader turns its on-disk format into ``DetectionRecord``s (image path, boxes in
pixels of the original image, contiguous class labels, ignore regions); from there
on every format goes through the same resize, flip, normalisation and padding, so
a detector sees identical batches whichever file format the data came from.

Batch format (what ``collate_detection`` returns)::

    inputs      float [B, 3, H, W]  ImageNet-normalised, zero-padded to the batch max
    pixel_mask  long  [B, H, W]     1 = real pixel, 0 = padding
    targets     list of B dicts, the ``labels`` Hugging Face DETR models take, plus extras:
        class_labels   long  [n]     0..num_classes-1
        boxes          float [n, 4]  cx, cy, w, h normalised by the resized *unpadded* image
        ignore_boxes   float [m, 4]  same normalisation: KITTI DontCare / mapped-away types, COCO iscrowd
        ignore_labels  long  [m]     the class an ignore region belongs to, -1 = every class
        image_id       str           KITTI frame id ("000123") / COCO image id as text
        orig_size      long  [2]     (h, w) of the file on disk
        size           long  [2]     (h, w) after resizing, before padding
    index       long  [B]           position in the split (the teacher-output cache keys on it)

Boxes are normalised by the unpadded image, as the original DETR does and as the
sine position embeddings (normalised over ``pixel_mask``) assume. Hugging Face's
``DetrImageProcessor.pad`` instead rescales boxes to the padded canvas by default:
a model fed by this module must not go through that processor. Because the box is
divided by the same size it was scaled to, the normalised box equals the box
divided by the original size: ``(x1 + x2) / 2 / orig_w`` and so on.

Resizing keeps the aspect ratio: ``image_size: [shorter, longer]`` scales each
image (up or down) until its shorter side reaches ``shorter`` or its longer side
reaches ``longer``, whichever comes first (DETR's rule without the random scale
set). Landscape KITTI frames thus fit a ``shorter x longer`` canvas.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.base import ZooDataModule
from zoo.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD
from zoo.errors import ConfigError, DataError


@dataclass
class DetectionRecord:
    """One image and its annotations, in pixels of the original image (x1, y1, x2, y2)."""

    image: Path
    image_id: str
    boxes: np.ndarray          # float32 [n, 4] training targets
    labels: np.ndarray         # int64 [n], contiguous 0..K-1
    ignore_boxes: np.ndarray   # float32 [m, 4] regions where detections count neither as hit nor miss
    ignore_labels: np.ndarray  # int64 [m], -1 = every class


def empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


# ---------------------------------------------------------------- geometry


def parse_image_size(value: Any) -> tuple[int, int]:
    """``image_size`` config -> (shorter, longer) side limits."""
    try:
        shorter, longer = (int(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data.image_size must be [shorter, longer], got {value!r}") from err
    if not 0 < shorter <= longer:
        raise ConfigError(f"data.image_size must be [shorter, longer] with 0 < shorter <= longer, got {value!r}")
    return shorter, longer


def fit_size(height: int, width: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) after scaling so the shorter side is <= shorter and the longer side <= longer, one of them equal."""
    shorter, longer = image_size
    scale = min(shorter / min(height, width), longer / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to the image, as DETR does before it drops empty ones."""
    return np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)


def xyxy_to_cxcywh(boxes: np.ndarray, width: int, height: int) -> torch.Tensor:
    """Pixel (x1, y1, x2, y2) -> (cx, cy, w, h) as fractions of an image of ``width`` x ``height``."""
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    b = b / scale
    return torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)


def hflip_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """Normalised boxes of a horizontally flipped image: cx -> 1 - cx."""
    flipped = boxes.clone()
    flipped[:, 0] = 1.0 - flipped[:, 0]
    return flipped


# ---------------------------------------------------------------- dataset and batches


class DetectionDataset(Dataset):
    """Records -> dict samples: resized, optionally flipped (p = 0.5), ImageNet-normalised images."""

    def __init__(self, records: list[DetectionRecord], image_size: tuple[int, int], hflip: bool = False):
        self.records, self.image_size, self.hflip = records, image_size, hflip
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.records)

    def load_image(self, record: DetectionRecord):
        from PIL import Image

        try:
            with Image.open(record.image) as image:
                return image.convert("RGB")
        except OSError as err:
            raise DataError(f"cannot read image '{record.image}': {err}") from err

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        record = self.records[i]
        image = self.load_image(record)
        orig_w, orig_h = image.size
        new_h, new_w = fit_size(orig_h, orig_w, self.image_size)
        if (new_w, new_h) != (orig_w, orig_h):
            image = image.resize((new_w, new_h), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)

        boxes = clip_boxes(record.boxes, orig_w, orig_h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # DETR drops boxes empty after clipping
        boxes = xyxy_to_cxcywh(boxes[keep], orig_w, orig_h)
        ignore = xyxy_to_cxcywh(clip_boxes(record.ignore_boxes, orig_w, orig_h), orig_w, orig_h)
        # torch's generator, not numpy's: DataLoader seeds it differently in every worker
        if self.hflip and torch.rand(()) < 0.5:
            pixels = pixels.flip(-1)
            boxes, ignore = hflip_cxcywh(boxes), hflip_cxcywh(ignore)
        target = {"class_labels": torch.as_tensor(record.labels[keep], dtype=torch.long),
                  "boxes": boxes, "ignore_boxes": ignore,
                  "ignore_labels": torch.as_tensor(record.ignore_labels, dtype=torch.long),
                  "image_id": record.image_id,
                  "orig_size": torch.tensor([orig_h, orig_w]), "size": torch.tensor([new_h, new_w])}
        return {"inputs": (pixels - self.mean) / self.std, "target": target, "index": i}


def collate_detection(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples of different sizes -> one zero-padded batch with a pixel mask (1 = real pixel)."""
    height = max(s["inputs"].shape[1] for s in samples)
    width = max(s["inputs"].shape[2] for s in samples)
    inputs = torch.zeros(len(samples), 3, height, width)
    mask = torch.zeros(len(samples), height, width, dtype=torch.long)
    for k, sample in enumerate(samples):
        _, h, w = sample["inputs"].shape
        inputs[k, :, :h, :w] = sample["inputs"]
        mask[k, :h, :w] = 1
    return {"inputs": inputs, "pixel_mask": mask, "targets": [s["target"] for s in samples],
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long)}


# ---------------------------------------------------------------- data module


def records_fingerprint(classes: list[str], splits: dict[str, list[DetectionRecord]]) -> str:
    """Hash of class names, split membership, annotations and each image's name and byte size.

    Image bytes are not read (KITTI's are 12 GB); a re-encoded image of another
    size still changes the fingerprint.
    """
    digest = hashlib.sha256("\n".join(classes).encode())
    for name, records in splits.items():
        digest.update(f"\n[{name}]".encode())
        for r in records:
            digest.update(f"\n{r.image.name}:{os.path.getsize(r.image)}:{r.image_id}".encode())
            for array in (r.boxes, r.labels, r.ignore_boxes, r.ignore_labels):
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


class DetectionDataModule(ZooDataModule):
    """A train/val(/test) split of records served as DETR batches.

    Subclasses read their format into ``records`` and call ``setup_records``.
    ``test`` is the validation split unless a reader supplies one: KITTI's test
    labels are not public and COCO's test-dev is scored on a server.
    """

    kind = "detection"
    classes: list[str]

    def setup_records(self, classes: list[str], records: dict[str, list[DetectionRecord]],
                      split_source: str) -> None:
        cfg = self.cfg
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.image_size = parse_image_size(cfg.image_size)
        self.input_shape = (3, *self.image_size)  # the bound of a landscape image; batches pad to their max
        hflip = bool(cfg.hflip)
        self.records = records
        self.split_source = split_source
        self.splits = {"train": DetectionDataset(records["train"], self.image_size, hflip=hflip),
                       "val": DetectionDataset(records["val"], self.image_size)}
        self.splits["test"] = (DetectionDataset(records["test"], self.image_size) if "test" in records
                               else self.splits["val"])
        self.collate_fn = collate_detection
        self.fingerprint = records_fingerprint(self.classes, records)
        # flips are random: the teacher-output cache must stay off
        self.transform_fingerprint = None if hflip else f"fit{self.image_size[0]}x{self.image_size[1]}"

    def split_info(self) -> dict[str, Any]:
        """Base info plus the classes and every split's image ids, so a run record pins its split exactly."""
        info = super().split_info()
        ids = {name: [r.image_id for r in recs] for name, recs in self.records.items()}
        info.update({"classes": self.classes, "split_source": self.split_source, "ids": ids,
                     "ids_sha256": {name: hashlib.sha256("\n".join(v).encode()).hexdigest()[:16]
                                    for name, v in ids.items()}})
        return info
