"""SVHN from its official MATLAB files (99,289 real 32x32 colour photos of house-number digits, 10 classes).

Reads ``train_32x32.mat`` (73,257 digits) and ``test_32x32.mat`` (26,032), the "cropped digits" format of
http://ufldl.stanford.edu/housenumbers/, from ``data.root`` with ``scipy.io.loadmat`` (MATLAB v5 files; loadmat
builds arrays and never runs code). ``X`` is (32, 32, 3, N) uint8: row, column, RGB channel, image; ``y`` is (N, 1)
with labels 1..10, where 10 stands for the digit 0 and becomes label 0 here, so a label is its digit.
``extra_32x32.mat`` (531,131 easier digits) is not read: train and test alone are the protocol of the usual
benchmarks and of the papers' numbers.

Split as for CIFAR (``zoo.data.cifar.serve_images``): the official train/test; a fixed, seeded ``val_size`` of the
training set held out for validation; then ``train_subset`` / ``train_slice``.
"""

from pathlib import Path

import numpy as np

from zoo.data.base import ZooDataModule
from zoo.data.cifar import data_root, describe, first_line, serve_images
from zoo.errors import DataError
from zoo.registry import DATASETS

FILES = ("train_32x32.mat", "test_32x32.mat")
# Per-channel (R, G, B) mean and std over all pixels of the 73,257 train_32x32.mat images, on the 0..1 scale: the
# widely quoted values computed from that file (e.g. in DeepCore's SVHN loader).
MEAN, STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
HINT = ("download train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ and set "
        "data.root to the folder holding them")


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN file as uint8 images (N, 3, 32, 32) and int64 labels 0..9, every field checked."""
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"{path}: file not found", HINT)
    try:
        content = loadmat(path, variable_names=["X", "y"])
    except Exception as err:  # a truncated or corrupt file fails in many ways (ValueError, MatReadError, zlib...)
        raise DataError(f"{path}: not a readable MATLAB v5 file ({first_line(err)})", HINT) from err
    for key in ("X", "y"):
        if key not in content:
            raise DataError(f"{path}: no '{key}' variable")
    images, labels = content["X"], content["y"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: 'X' is {describe(images)}, expected a uint8 array of 32 x 32 x 3 x N")
    if labels.ndim != 2 or labels.shape[1] != 1 or len(labels) != images.shape[3]:
        raise DataError(f"{path}: 'y' is {describe(labels)} for {images.shape[3]} images, expected N x 1")
    labels = labels[:, 0]
    if len(labels) and (labels.dtype.kind not in "iuf" or np.any(labels != np.round(labels))):
        raise DataError(f"{path}: 'y' holds {labels.dtype} values, not integers")
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels outside 1..10 (found {labels.min():g}..{labels.max():g})")
    return images.transpose(3, 2, 0, 1), labels.astype(np.int64) % 10  # digit 0 is stored as 10


@DATASETS.register("svhn")
class SVHNDataModule(ZooDataModule):
    name = "svhn"
    kind = "image_classification"
    num_classes = 10
    input_shape = (3, 32, 32)
    export_preprocess = {"pixel_max": 255.0, "mean": list(MEAN), "std": list(STD), "resize": None,
                         "raw_input": "32x32 RGB images with pixel values 0..255 (X[:, :, :, n] as channel, row, "
                                      "column), NCHW", "classes": [str(digit) for digit in range(10)]}

    def __init__(self, cfg, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed)
        root = data_root(cfg, "SVHN", "svhn (the folder holding train_32x32.mat and test_32x32.mat)", HINT)
        train, test = (read_mat(root / name) for name in FILES)
        serve_images(self, train, test, MEAN, STD)
