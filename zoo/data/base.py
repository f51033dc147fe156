"""Shared pieces of the zoo's data modules.

Batches are dicts with stable keys: ``inputs``, ``targets`` and ``index`` (the
sample's position in its split, which the teacher-output cache keys on).
Shuffling is a DistributedSampler seeded by (run seed, epoch), built here for
any world size, so the order of an epoch is the same after a resume and the
same whether or not the run is distributed.
"""

import hashlib
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from zoo.errors import DataError


class TensorDictDataset(Dataset):
    """In-memory samples served as dict batches; ``__getitems__`` fetches a whole batch at once.

    ``extras`` are further per-sample tensors served under their own keys (e.g. ``subclass``: the hidden fine
    class of a coarse-labelled sample, which only an oracle reference may read).
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, extras: dict[str, torch.Tensor] | None = None):
        self.inputs, self.targets, self.extras = inputs, targets, dict(extras or {})

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.inputs[i], "targets": self.targets[i], "index": torch.tensor(i),
                **{key: values[i] for key, values in self.extras.items()}}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices)
        return {"inputs": self.inputs[idx], "targets": self.targets[idx], "index": idx,
                **{key: values[idx] for key, values in self.extras.items()}}


class EpochTaggedSampler(DistributedSampler):
    """DistributedSampler that yields (epoch, index) pairs, for datasets whose samples change by epoch.

    Lightning calls ``set_epoch`` on the sampler in the main process; passing the epoch
    along with each index is what lets worker processes see it too.
    """

    def __iter__(self):
        return ((self.epoch, index) for index in super().__iter__())


def keep_collated(batch: Any) -> Any:
    """collate_fn for datasets whose ``__getitems__`` already returns a batch."""
    return batch


def fixed_split(n: int, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """Deterministic (train, val, test) index arrays: a seeded permutation cut by fractions."""
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(n * fractions[0]), round(n * fractions[1])
    return np.sort(order[n_val + n_test:]), np.sort(order[:n_val]), np.sort(order[n_val:n_val + n_test])


def training_indices(train_idx: np.ndarray, cfg: Any) -> np.ndarray:
    """The training split a data block asks for, out of ``train_idx`` (the training indices once val is held out).

    ``train_subset: N`` keeps a fixed random N of them. ``train_slice: [start, stop]`` keeps positions start..stop of
    one fixed permutation of them (seeded by ``split_seed``), so that blocks with non-overlapping slices never share
    an example: an active-distillation task trains its imperfect teacher on one slice and draws its labelled set and
    pool from another (``null`` ends are open). The two are exclusive.
    """
    subset, bounds = cfg.get("train_subset"), cfg.get("train_slice")
    if subset and bounds is not None:
        raise DataError("data.train_subset and data.train_slice are both set", "keep one of them")
    if subset:
        return np.sort(np.random.default_rng(int(cfg.split_seed) + 1)
                       .choice(train_idx, min(int(subset), len(train_idx)), replace=False))
    if bounds is None:
        return train_idx
    if len(bounds) != 2 or any(b is not None and (not isinstance(b, int) or b < 0) for b in bounds):
        raise DataError(f"data.train_slice={list(bounds)!r} is not [start, stop]",
                        "give two non-negative integers, or null for an open end, e.g. [0, 2000]")
    order = np.random.default_rng(int(cfg.split_seed) + 2).permutation(len(train_idx))
    picked = order[slice(*bounds)]
    if len(picked) == 0:
        raise DataError(f"data.train_slice={list(bounds)!r} is empty: the training split has {len(train_idx)} "
                        "examples")
    return np.sort(train_idx[picked])


def read_utf8(path: Path) -> str:
    """The text of a UTF-8 file, a byte-order mark dropped; bytes that are not UTF-8 are an error naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:  # decoded whole for speed; the line is counted only on failure
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise DataError(f"{path}:{line}: not UTF-8 (byte {data[err.start]:#04x} at column {column})",
                        f"convert it to UTF-8, e.g. iconv -f latin1 -t utf-8 '{path}' > converted.txt") from err


def fingerprint(*arrays: Any) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        data = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        digest.update(str(data.shape).encode() + str(data.dtype).encode())
        digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()[:16]


class ZooDataModule(L.LightningDataModule):
    """Base for the zoo's data modules.

    Subclasses declare their ``kind`` (a name in ``zoo.kinds``: ``image_classification``, ``detection``,
    ``retrieval``, ...), which decides how runs on them are evaluated, exported and ranked; they set
    ``self.splits`` (name -> Dataset), ``num_classes`` (None where there are no classes), ``input_shape`` (() for
    text) and ``fingerprint``; ``transform_fingerprint`` is None when training inputs are random (augmentation),
    which switches the teacher cache off. ``vocabulary`` names the tokenizer a text kind's data is read with (None
    for images, and for retrieval, whose encoders bring their own).
    """

    name = "base"
    kind: str = ""
    num_classes: int | None
    input_shape: tuple[int, ...]
    fingerprint: str
    vocabulary: str | None = None
    transform_fingerprint: str | None = "identity"
    crop_spec = None  # a region_crops.CropSpec when the training split is served as seeded random crops
    export_preprocess: dict | None = None  # how raw inputs become model inputs (else zoo.export.preprocess's recipe)

    def __init__(self, cfg: Any, shuffle_seed: int = 0):
        super().__init__()
        if not self.kind:
            raise TypeError(f"{type(self).__name__} must declare its kind (a name in zoo.kinds)")
        self.cfg = cfg
        self.shuffle_seed = shuffle_seed  # the run's seed: which samples form each split stays fixed
        self.splits: dict[str, Dataset] = {}
        self.collate_fn = keep_collated

    def split_info(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "fingerprint": self.fingerprint,
                "sizes": {k: len(v) for k, v in self.splits.items()},
                "split_seed": int(self.cfg.split_seed)}

    def world(self) -> tuple[int, int]:
        """(number of processes, this one's rank) of the run the module serves; (1, 0) outside one."""
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, split: str, train: bool, sampler=None) -> DataLoader:
        """``split``'s loader: shuffled by (seed, epoch) for training, sharded over the ranks of a distributed run;
        ``sampler`` replaces the default order (a sampler with ``set_epoch``)."""
        dataset = self.splits[split]
        world, rank = self.world()
        if sampler is None and (train or world > 1):
            sampler_cls = EpochTaggedSampler if getattr(dataset, "needs_epoch", False) else DistributedSampler
            sampler = sampler_cls(dataset, num_replicas=world, rank=rank, shuffle=train,
                                  seed=self.shuffle_seed, drop_last=False)
        batch_size = int(self.cfg.batch_size if train else self.cfg.eval_batch_size)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                          num_workers=int(self.cfg.num_workers), collate_fn=self.collate_fn,
                          persistent_workers=int(self.cfg.num_workers) > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def eval_loader(self, split: str, limit_batches: int | None = None) -> DataLoader:
        """A single-process loader over the whole split, for evaluation outside Lightning; over its first
        ``limit_batches`` batches only when given (a smoke run)."""
        dataset = self.splits[split]
        batch_size = int(self.cfg.eval_batch_size)
        if limit_batches is not None:
            dataset = Subset(dataset, range(min(len(dataset), limit_batches * batch_size)))
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=int(self.cfg.num_workers),
                          collate_fn=self.collate_fn)

    def attach_teachers(self, teachers: list, say=print) -> None:
        """Called with the ready teachers before training. Nothing here; a data set whose training examples
        depend on the teachers (conversational retrieval mining candidates from a teacher run) overrides it."""
