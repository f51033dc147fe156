"""Random-resized crops whose parameters are data: sampled per (crop seed, epoch), applied in batches.

FKD (Shen & Xing, "A Fast Knowledge Distillation Framework for Visual Recognition",
ECCV 2022) stores, for every sample and epoch, the crop it will be trained on and
the teachers' soft label of that crop. That needs crops that are values, not side
effects of a transform: here a crop is a row ``(top, left, height, width, flip)``
in fractions of the image, and an epoch's rows come from ``default_rng([seed, epoch])``.
The same seed therefore gives the same crops to a run that queries its teachers
online and to the soft-label store, and to every run seed (the run seed still
sets the student's initialisation and the data order).

Sampling follows torchvision's RandomResizedCrop (area fraction uniform in
``scale``, aspect ratio log-uniform in ``ratio``), with one simplification: a crop
that does not fit is shrunk to fit instead of re-drawn up to ten times. Aspect
ratios are in the image's own normalised coordinates, which equal pixel ratios
for the square images of the mini sets.
"""

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.ops import roi_align

CROP_COLUMNS = ("top", "left", "height", "width", "flip")


@dataclass(frozen=True)
class CropSpec:
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    seed: int = 0

    @classmethod
    def from_config(cls, cfg) -> "CropSpec":
        return cls(scale=(float(cfg.scale[0]), float(cfg.scale[1])), ratio=(float(cfg.ratio[0]), float(cfg.ratio[1])),
                   flip=bool(cfg.flip), seed=int(cfg.seed))

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def sample_crops(num_samples: int, spec: CropSpec, epoch: int) -> np.ndarray:
    """[N, 5] float32 rows (top, left, height, width, flip) for one epoch; a pure function of (spec, epoch)."""
    rng = np.random.default_rng([spec.seed, epoch])
    area = rng.uniform(spec.scale[0], spec.scale[1], num_samples)
    ratio = np.exp(rng.uniform(math.log(spec.ratio[0]), math.log(spec.ratio[1]), num_samples))
    width = np.minimum(np.sqrt(area * ratio), 1.0)
    height = np.minimum(np.sqrt(area / ratio), 1.0)
    top = rng.uniform(0.0, 1.0, num_samples) * (1.0 - height)
    left = rng.uniform(0.0, 1.0, num_samples) * (1.0 - width)
    flip = (rng.uniform(0.0, 1.0, num_samples) < 0.5) if spec.flip else np.zeros(num_samples, dtype=bool)
    return np.stack([top, left, height, width, flip.astype(np.float64)], axis=1).astype(np.float32)


def apply_crops(images: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """Crop each image [B, C, H, W] to its row of ``crops`` and resize back to H x W (bilinear), then flip.

    One roi_align call does the crop-and-resize of the whole batch: one bilinear sample at
    each output pixel's centre (sampling_ratio 1, aligned), which is a plain bilinear resize;
    crops are never larger than the output, so no averaging is needed.
    """
    batch, _, height, width = images.shape
    crops = crops.to(images.device, torch.float32)
    boxes = torch.stack([torch.arange(batch, device=images.device, dtype=torch.float32),
                         crops[:, 1] * width, crops[:, 0] * height,
                         (crops[:, 1] + crops[:, 3]) * width, (crops[:, 0] + crops[:, 2]) * height], dim=1)
    out = roi_align(images, boxes, output_size=(height, width), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    flip = crops[:, 4] > 0.5
    if flip.any():
        out[flip] = out[flip].flip(-1)
    return out


class RandomCropTrainSet(Dataset):
    """An in-memory training split served as random-resized crops, one crop table per epoch.

    Indices arrive as (epoch, index) pairs from ``EpochTaggedSampler`` (plain ints mean
    epoch 0), so the crop of a sample depends only on the crop seed, the epoch and the
    sample, also in worker processes. With a soft-label store attached the crops and the
    teachers' soft labels are read from the store, and batches carry ``soft_labels``.
    """

    needs_epoch = True

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, spec: CropSpec):
        self.inputs, self.targets, self.spec = inputs, targets, spec
        self.store = None
        self._table: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def attach_store(self, store) -> None:
        self.store, self._table = store, None

    def sample_crops(self, epoch: int) -> np.ndarray:
        return sample_crops(len(self), self.spec, epoch)

    def crop_table(self, epoch: int) -> np.ndarray:
        if self._table is None or self._table[0] != epoch:
            self._table = (epoch, self.store.crops(epoch) if self.store is not None else self.sample_crops(epoch))
        return self._table[1]

    def crop_batch(self, indices: np.ndarray, crops: torch.Tensor) -> torch.Tensor:
        """The given samples cut to the given crops (what the teachers see when the store is generated)."""
        return apply_crops(self.inputs[torch.as_tensor(indices)], crops)

    def __getitem__(self, item):
        return {key: value[0] for key, value in self.__getitems__([item]).items()}

    def __getitems__(self, items: list) -> dict[str, torch.Tensor]:
        pairs = [(0, item) if isinstance(item, int) else item for item in items]
        epoch = pairs[0][0]
        if any(e != epoch for e, _ in pairs):
            raise ValueError("a batch mixes epochs")  # cannot happen with EpochTaggedSampler
        idx = torch.as_tensor([i for _, i in pairs])
        crops = torch.from_numpy(self.crop_table(epoch)[idx.numpy()])
        batch = {"inputs": self.crop_batch(idx.numpy(), crops), "targets": self.targets[idx], "index": idx}
        if self.store is not None:
            batch["soft_labels"] = self.store.soft_labels(epoch, idx.numpy())
        return batch
