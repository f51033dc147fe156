"""CIFAR-10 and CIFAR-100 from their official python pickles (60,000 real 32x32 colour photos, 10 or 100 classes).

Reads the unpacked "python version" archives of https://www.cs.toronto.edu/~kriz/cifar.html: ``data.root`` is the
folder ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) or ``cifar-100-python/``
(``train``, ``test``). Each file is a dict written by Python 2's cPickle (protocol 2), read back with
``encoding="bytes"``: ``data`` is an N x 3072 uint8 array, each row the red, then the green, then the blue 32x32
plane, rows top to bottom; the labels are a list of ints (``labels``; CIFAR-100: ``fine_labels`` and
``coarse_labels``). The class names (``batches.meta`` / ``meta``) are read only for ``zoo export``.

The files are never given to plain ``pickle.load``, which runs whatever a file names (torchvision's reader does
that). ``ArrayUnpickler`` resolves only the globals that rebuild a numpy array (``_reconstruct`` under numpy 1's
and numpy 2's module name, ``ndarray``, ``dtype``); any other global is a DataError before anything is called.

Split: the official train/test; a fixed, seeded ``val_size`` of the training set is held out for validation, as
for Fashion-MNIST, then ``train_subset`` / ``train_slice`` pick the training examples (``serve_images``, which the
SVHN reader shares). CIFAR-100's ``labels: coarse`` trains on the 20 superclasses instead of the 100 classes.
"""

import pickle
from pathlib import Path

import numpy as np
import torch

from zoo.data.base import TensorDictDataset, ZooDataModule, fingerprint, training_indices
from zoo.errors import DataError
from zoo.registry import DATASETS

RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array-rebuilding function, whichever module holds it
SAFE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT,  # the name in the official files
                ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,  # the name numpy 2 writes
                ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
# Per-channel (R, G, B) mean and std over all pixels of the 50,000 official training images, on the 0..1 scale: the
# widely quoted values computed from these files (the often copied CIFAR-10 std 0.2023, 0.1994, 0.2010 is not this).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
CIFAR100_LABELS = {"fine": 100, "coarse": 20}


def first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def data_root(cfg, title: str, example: str, hint: str) -> Path:
    """``data.root`` as an existing folder; unset or missing is a one-line error with ``hint``."""
    if cfg.root is None:
        raise DataError(f"{title} needs its folder: data.root=/path/to/{example}", hint)
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"{title} folder '{root}' does not exist", hint)
    return root


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild dicts, lists and numpy arrays and nothing else: a file naming any other global
    (``os.system``, ``builtins.eval``, ...) is refused before the global is even imported."""

    def __init__(self, handle, path: Path):
        super().__init__(handle, encoding="bytes")  # Python 2 str (keys, array bytes) stays bytes
        self.path = path

    def find_class(self, module: str, name: str):
        found = SAFE_GLOBALS.get((module, name))
        if found is None:
            raise DataError(f"{self.path}: refusing to unpickle '{module}.{name}' (only numpy arrays are allowed)",
                            "the official CIFAR pickles need nothing else: download them again")
        return found


def read_pickle(path: Path, hint: str) -> dict:
    """The dict pickled in ``path``, its bytes keys decoded to str."""
    if not path.is_file():
        raise DataError(f"{path}: file not found", hint)
    try:
        with open(path, "rb") as handle:
            content = ArrayUnpickler(handle, path).load()
    except DataError:
        raise
    except Exception as err:  # a truncated or corrupt pickle fails in many ways (EOFError, UnpicklingError, ...)
        raise DataError(f"{path}: not a readable CIFAR pickle ({first_line(err)})", hint) from err
    if not isinstance(content, dict):
        raise DataError(f"{path}: holds {describe(content)}, not a dict")
    return {key.decode("latin-1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def read_batch(path: Path, label_key: str, num_classes: int, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as uint8 images (N, 3, 32, 32) and int64 labels, every field checked."""
    content = read_pickle(path, hint)
    for key in ("data", label_key):
        if key not in content:
            raise DataError(f"{path}: no '{key}' entry (it has {', '.join(sorted(map(str, content)))})")
    data = content["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' is {describe(data)}, expected a uint8 array of N x 3072 (3 x 32 x 32)")
    try:
        labels = np.asarray(content[label_key])
    except (TypeError, ValueError) as err:
        raise DataError(f"{path}: '{label_key}' is not a list of integers ({first_line(err)})") from err
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(f"{path}: {labels.size} {label_key} for {len(data)} images")
    if len(labels) and labels.dtype.kind not in "iu":
        raise DataError(f"{path}: '{label_key}' holds {labels.dtype} values, not integers")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: {label_key} outside 0..{num_classes - 1} "
                        f"(found {labels.min()}..{labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels


def serve_images(module: ZooDataModule, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Sets ``module.splits`` and ``module.fingerprint`` from uint8 (N, 3, H, W) images and int64 labels: the official
    test split; a seeded ``val_size`` of train held out; ``training_indices`` of the rest; inputs normalised."""
    cfg = module.cfg
    (train_x, train_y), (test_x, test_y) = train, test
    val_size = int(cfg.val_size)
    if not 0 <= val_size < len(train_y):
        raise DataError(f"data.val_size={val_size} leaves no training examples: {module.name} has "
                        f"{len(train_y)} training images", f"set data.val_size below {len(train_y)}")
    order = np.random.default_rng(int(cfg.split_seed)).permutation(len(train_y))
    val_idx = np.sort(order[:val_size])
    train_idx = training_indices(np.sort(order[val_size:]), cfg)
    shift = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    scale = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def dataset(images: np.ndarray, labels: np.ndarray) -> TensorDictDataset:
        inputs = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).sub_(shift).div_(scale)
        return TensorDictDataset(inputs, torch.from_numpy(labels))

    module.splits = {"train": dataset(train_x[train_idx], train_y[train_idx]),
                     "val": dataset(train_x[val_idx], train_y[val_idx]), "test": dataset(test_x, test_y)}
    module.fingerprint = fingerprint(train_x, train_y, test_x, test_y, train_idx, val_idx)


class CifarDataModule(ZooDataModule):
    """The reader both CIFARs share; a subclass names its folder, files, label key and constants."""

    kind = "image_classification"
    input_shape = (3, 32, 32)
    title = folder = ""
    train_files: tuple[str, ...] = ()
    test_file = meta_file = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __init__(self, cfg, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed)
        self.label_entry = label_key = self.label_key(cfg)
        self.hint = hint = (f"download the python version from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it "
                            f"and set data.root to its {self.folder} folder "
                            f"({', '.join((*self.train_files, self.test_file))})")
        self.root = root = data_root(cfg, self.title, self.folder, hint)
        batches = [read_batch(root / name, label_key, self.num_classes, hint) for name in self.train_files]
        train = np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
        serve_images(self, train, read_batch(root / self.test_file, label_key, self.num_classes, hint),
                     self.mean, self.std)

    def label_key(self, cfg) -> str:
        return "labels"

    @property
    def export_preprocess(self) -> dict:
        """What ``zoo export`` tells a deployed model's callers; the class names come from the meta file."""
        path, key = self.root / self.meta_file, self.label_entry.removesuffix("s") + "_names"  # fine_label_names
        names = read_pickle(path, self.hint).get(key)
        named = isinstance(names, list) and all(isinstance(name, bytes | str) for name in names)
        if not named or len(names) != self.num_classes:
            raise DataError(f"{path}: '{key}' is not a list of {self.num_classes} class names")
        return {"pixel_max": 255.0, "mean": list(self.mean), "std": list(self.std), "resize": None,
                "raw_input": "32x32 RGB images with pixel values 0..255 (a row of the pickles' data as 3 x 32 x 32), "
                             "NCHW",
                "classes": [name.decode("latin-1") if isinstance(name, bytes) else name for name in names]}


@DATASETS.register("cifar10")
class Cifar10DataModule(CifarDataModule):
    name = "cifar10"
    title = "CIFAR-10"
    folder = "cifar-10-batches-py"
    num_classes = 10
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_file = "test_batch"
    meta_file = "batches.meta"
    mean, std = CIFAR10_MEAN, CIFAR10_STD


@DATASETS.register("cifar100")
class Cifar100DataModule(CifarDataModule):
    name = "cifar100"
    title = "CIFAR-100"
    folder = "cifar-100-python"
    num_classes = 100
    train_files = ("train",)
    test_file = "test"
    meta_file = "meta"
    mean, std = CIFAR100_MEAN, CIFAR100_STD

    def label_key(self, cfg) -> str:
        labels = str(cfg.get("labels", "fine"))
        if labels not in CIFAR100_LABELS:
            raise DataError(f"unknown data.labels '{labels}'", "data.labels is fine (100 classes) or coarse (20)")
        self.num_classes = CIFAR100_LABELS[labels]
        return f"{labels}_labels"
