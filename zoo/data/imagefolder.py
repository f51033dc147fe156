"""ImageNet-layout folders: <root>/train/<class>/*.jpg and <root>/val/<class>/*.jpg.

Training uses RandomResizedCrop + horizontal flip (random inputs, so the
teacher-output cache is off); val/ is both the validation and the test split,
as in the ImageNet literature, with Resize(size*256/224) + CenterCrop(size).
"""

import hashlib
from pathlib import Path

import torch
from torch.utils.data import Dataset

from zoo.data.base import ZooDataModule
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


class ImageFolderDataModule(ZooDataModule):
    name = "imagefolder"
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
        train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
        eval_tf = T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), normalize])
        train = IndexedImageFolder(root / "train", train_tf)
        val = IndexedImageFolder(root / "val", eval_tf)
        if train.folder.classes != val.folder.classes:
            raise DataError(f"{root}: train/ and val/ hold different class folders")
        self.splits = {"train": train, "val": val, "test": val}
        self.num_classes = len(train.folder.classes)
        self.input_shape = (3, size, size)
        self.collate_fn = default_collate
        listing = "\n".join(f"{p}:{c}" for p, c in train.folder.samples + val.folder.samples)
        self.fingerprint = hashlib.sha256(listing.encode()).hexdigest()[:16]


@DATASETS.register("imagefolder")
def build(cfg, shuffle_seed: int = 0) -> ImageFolderDataModule:
    return ImageFolderDataModule(cfg, shuffle_seed)
