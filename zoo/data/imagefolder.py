"""ImageNet-layout folders: <root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg.

Training uses random-resized crops + horizontal flip (random inputs, so the
teacher-output cache is off). The crops are seeded values (``data.augment``,
zoo/data/region_crops.py) rather than torchvision's RandomResizedCrop draws, so
that a soft-label store can hold each crop's teacher label (``soft_labels.enabled``).
val/ is both the validation and the test split, as in the ImageNet literature,
with Resize(size*256/224) + CenterCrop(size).
"""

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.base import ZooDataModule
from zoo.data.region_crops import CropSpec, sample_crops
from zoo.errors import DataError
from zoo.registry import DATASETS

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class IndexedImageFolder(Dataset):
    """torchvision's ImageFolder as dict samples; an unreadable image names its file."""

    def __init__(self, root: Path, transform):
        from torchvision.datasets import ImageFolder

        try:
            self.folder = ImageFolder(str(root), transform=transform)
        except (FileNotFoundError, OSError) as err:
            raise DataError(f"{root}: {err}", "expected <root>/<class>/<image> files") from err

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        try:
            image, target = self.folder[i]
        except OSError as err:
            raise DataError(f"cannot read image '{self.folder.samples[i][0]}': {err}") from err
        return {"inputs": image, "targets": torch.tensor(target), "index": torch.tensor(i)}


class SeededCropImageFolder(IndexedImageFolder):
    """Training images cut to the seeded crop of (epoch, index), resized, flipped, normalised.

    Served as (epoch, index) pairs by EpochTaggedSampler; with a soft-label store attached
    the crops come from the store and samples carry ``soft_labels``.
    """

    needs_epoch = True

    def __init__(self, root: Path, size: int, spec: CropSpec, normalize):
        super().__init__(root, transform=None)
        self.size, self.spec, self.normalize = size, spec, normalize
        self.store = None
        self._table: tuple[int, np.ndarray] | None = None

    def attach_store(self, store) -> None:
        self.store, self._table = store, None

    def sample_crops(self, epoch: int):
        return sample_crops(len(self), self.spec, epoch)

    def crop_table(self, epoch: int):
        if self._table is None or self._table[0] != epoch:
            self._table = (epoch, self.store.crops(epoch) if self.store is not None else self.sample_crops(epoch))
        return self._table[1]

    def _cropped(self, i: int, crop) -> torch.Tensor:
        from torchvision.transforms import functional as TF

        path = self.folder.samples[i][0]
        try:
            image = self.folder.loader(path)
        except OSError as err:
            raise DataError(f"cannot read image '{path}': {err}") from err
        width, height = image.size
        top, left, crop_h, crop_w, flip = (float(v) for v in crop)
        image = TF.resized_crop(image, round(top * height), round(left * width), max(1, round(crop_h * height)),
                                max(1, round(crop_w * width)), [self.size, self.size])
        if flip > 0.5:
            image = TF.hflip(image)
        return self.normalize(TF.to_tensor(image))

    def crop_batch(self, indices, crops: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._cropped(int(i), crop) for i, crop in zip(indices, crops, strict=True)])

    def __getitem__(self, item):
        epoch, i = (0, item) if isinstance(item, int) else item
        sample = {"inputs": self._cropped(i, self.crop_table(epoch)[i]),
                  "targets": torch.tensor(self.folder.targets[i]), "index": torch.tensor(i)}
        if self.store is not None:
            sample["soft_labels"] = self.store.soft_labels(epoch, [i])[0]
        return sample


@DATASETS.register("imagefolder")
class ImageFolderDataModule(ZooDataModule):
    name = "imagefolder"
    kind = "image_classification"
    transform_fingerprint = None  # random crops: teacher outputs cannot be cached

    def __init__(self, cfg, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed)
        from torch.utils.data import default_collate
        from torchvision import transforms as T

        root = Path(cfg.root).expanduser() if cfg.root else None
        if root is None or not (root / "train").is_dir() or not (root / "val").is_dir():
            raise DataError(f"image folder '{root}' must contain train/ and val/ class folders",
                            "set data.root=<folder with train/<class>/* and val/<class>/*>")
        size = int(cfg.image_size)
        normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        eval_tf = T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), normalize])
        if cfg.augment.enabled:
            self.crop_spec = CropSpec.from_config(cfg.augment)
            train = SeededCropImageFolder(root / "train", size, self.crop_spec, normalize)
        else:  # no augmentation: train on the evaluation view
            train = IndexedImageFolder(root / "train", eval_tf)
        val = IndexedImageFolder(root / "val", eval_tf)
        if train.folder.classes != val.folder.classes:
            raise DataError(f"{root}: train/ and val/ hold different class folders")
        self.splits = {"train": train, "val": val, "test": val}
        self.num_classes = len(train.folder.classes)
        self.input_shape = (3, size, size)
        self.collate_fn = default_collate
        listing = "\n".join(f"{p}:{c}" for p, c in train.folder.samples + val.folder.samples)
        self.fingerprint = hashlib.sha256(listing.encode()).hexdigest()[:16]
