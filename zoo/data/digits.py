"""sklearn's digits: 1,797 real 8x8 handwritten digits, installed with scikit-learn."""

import torch

from zoo.data.base import TensorDictDataset, ZooDataModule, fingerprint, fixed_split
from zoo.registry import DATASETS


@DATASETS.register("digits")
class DigitsDataModule(ZooDataModule):
    name = "digits"
    kind = "image_classification"
    num_classes = 10
    input_shape = (1, 8, 8)

    def __init__(self, cfg, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed)
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        train, val, test = fixed_split(len(labels), (cfg.val_fraction, cfg.test_fraction), cfg.split_seed)
        self.splits = {name: TensorDictDataset(images[idx], labels[idx])
                       for name, idx in (("train", train), ("val", val), ("test", test))}
        self.fingerprint = fingerprint(images, labels, train, val, test)
