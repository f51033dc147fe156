"""Fashion-MNIST from its idx files (70,000 real 28x28 clothing images, 10 classes).

Reads the four idx files, gzipped or not, from ``data.root``; Debian's package
``dataset-fashion-mnist`` puts them in /usr/share/datasets/fashion-mnist.
torchvision's reader is not used because it wants the files unzipped in its own
folder layout. Split: the official 60k/10k train/test; a fixed, seeded
``val_size`` of the training set is held out for validation.

``labels: parity`` makes the task binary the way the LELP paper makes CIFAR-10 binary: label = class mod 2, so
each binary class hides five real classes; the position of the real class inside its binary class (class // 2,
0..4) is served with every sample as ``subclass``, for references that may read it (LELP's oracle), never as a
target.
"""

import gzip
from pathlib import Path

import numpy as np
import torch

from zoo.data.base import TensorDictDataset, ZooDataModule, fingerprint, training_indices
from zoo.data.region_crops import CropSpec, RandomCropTrainSet
from zoo.errors import DataError
from zoo.registry import DATASETS

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"  # where apt-get install dataset-fashion-mnist puts the files
MEAN, STD = 0.2860, 0.3530  # the training set's pixel statistics
LABELS = ("fine", "parity")


def find_idx_file(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"Fashion-MNIST file '{stem}[.gz]' not found in '{root}'",
                    "install it with `apt-get install dataset-fashion-mnist` or point data.root=<folder> "
                    "at a folder holding the four idx files")


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An idx file as a uint8 array; magic number, shape and length are checked."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read idx file ({err})") from err
    if len(raw) < 4 + 4 * expected_dims or raw[:3] != b"\x00\x00\x08" or raw[3] != expected_dims:
        raise DataError(f"{path}: not an unsigned-byte idx file with {expected_dims} dimension(s)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(expected_dims))
    body = raw[4 + 4 * expected_dims:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"{path}: truncated or padded idx file: header says {shape}, "
                        f"{len(body)} bytes of data follow")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def read_splits(root: str | Path | None, hint: str, whose: str = "") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official train and test splits as (uint8 images [N, 28, 28], labels [N]) from the folder ``root``
    (Debian's by default), checked: a split's images and labels agree in count, labels are 0..9. ``whose`` names
    what reads them in the error, ``hint`` what to do when the folder is missing."""
    root = Path(root or DEBIAN_ROOT).expanduser()
    if not root.is_dir():
        raise DataError(f"Fashion-MNIST folder '{root}'{whose} does not exist", hint)
    splits = {}
    for split, (images_stem, labels_stem) in FILES.items():
        images, labels = read_idx(find_idx_file(root, images_stem), 3), read_idx(find_idx_file(root, labels_stem), 1)
        if len(images) != len(labels):
            raise DataError(f"{root}: {split} images and labels differ in count")
        if labels.max() >= 10:
            raise DataError(f"{root}: {split} labels outside 0..9")
        splits[split] = images, labels
    return splits


@DATASETS.register("fashion_mnist")
class FashionMNISTDataModule(ZooDataModule):
    name = "fashion_mnist"
    kind = "image_classification"
    num_classes = 10
    input_shape = (1, 28, 28)

    def __init__(self, cfg, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed)
        labels = str(cfg.get("labels", "fine"))
        if labels not in LABELS:
            raise DataError(f"unknown data.labels '{labels}'", f"data.labels is one of {', '.join(LABELS)}")
        arrays = read_splits(cfg.root, "install it with `apt-get install dataset-fashion-mnist` or set "
                                        "data.root=<folder>")

        def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
            images, labels = arrays[split]
            images = torch.from_numpy(images.astype(np.float32) / 255.0)
            return (images.unsqueeze(1) - MEAN) / STD, torch.from_numpy(labels.astype(np.int64))

        train_x, train_fine = tensors("train")
        test_x, test_fine = tensors("test")
        parity = labels == "parity"
        if parity:
            self.num_classes = 2
        train_y, test_y = (train_fine % 2, test_fine % 2) if parity else (train_fine, test_fine)

        def extras(fine: torch.Tensor) -> dict[str, torch.Tensor] | None:
            return {"subclass": fine // 2} if parity else None  # the real class's place in its binary class

        order = np.random.default_rng(int(cfg.split_seed)).permutation(len(train_y))
        val_idx = np.sort(order[: int(cfg.val_size)])
        train_idx = np.sort(order[int(cfg.val_size):])
        train_idx = training_indices(train_idx, cfg)
        augment = cfg.get("augment")
        if augment is not None and augment.enabled:
            spec = CropSpec.from_config(augment)
            train_set = RandomCropTrainSet(train_x[train_idx], train_y[train_idx], spec)
            self.transform_fingerprint = None  # inputs change every epoch: no teacher-output cache
            self.crop_spec = spec
        else:
            train_set = TensorDictDataset(train_x[train_idx], train_y[train_idx], extras(train_fine[train_idx]))
        self.splits = {"train": train_set,
                       "val": TensorDictDataset(train_x[val_idx], train_y[val_idx], extras(train_fine[val_idx])),
                       "test": TensorDictDataset(test_x, test_y, extras(test_fine))}
        self.fingerprint = fingerprint(*arrays["train"], *arrays["test"], train_idx, val_idx,
                                       *([np.array([2])] if parity else []))  # fine labels keep their old print
