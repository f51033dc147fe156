"""On-disk cache of teacher outputs for deterministic training inputs.

When the training inputs of a sample never change (no random augmentation),
the teachers' outputs for it never change either, so they are computed once
and read back in later epochs and later runs. One cache folder holds one
(teachers, dataset, transform, split) combination; its name is a hash of their
fingerprints, and ``meta.json`` repeats them so a mismatch is caught. Inside,
each named output is a ``.npy`` memory map of shape [N, ...] indexed by the
sample's ``index``, next to ``filled.npy`` and ``checksum.npy``.

The checksum of a row is a multiply-add hash of its 32-bit words with fixed
odd multipliers (mod 2^64), plus the row's index times an odd constant:
computed for a whole batch in one numpy call; any flipped bit changes it, a row
moved to another index fails, and a row zeroed together with its checksum fails
too (its checksum is (index + 1) times the constant, never 0; format 2 — format
1 had no index term, so a zeroed row with a zeroed checksum passed). A row whose
checksum does not match is recomputed and rewritten, never used; the number of
such rows is reported.
"""

import functools
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from zoo.atomic import atomic_write_text

FORMAT_VERSION = 2  # 2: the row index in the checksum (a new folder: format-1 caches are never read)
INDEX_SALT = np.uint64(0x9E3779B97F4A7C15)  # odd: (index + 1) * INDEX_SALT is never 0 mod 2^64
log = logging.getLogger(__name__)


def hash_tensors(digest, tensors: dict[str, torch.Tensor]) -> None:
    """Feed ``digest`` (a hashlib object) every name and tensor's bytes of ``tensors``, in name order."""
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())


def teacher_fingerprint(names: list[str], teachers: list[torch.nn.Module]) -> str:
    """Hash of the teachers' names and every tensor of their state (weights and buffers)."""
    digest = hashlib.sha256("|".join(names).encode())
    for teacher in teachers:
        hash_tensors(digest, teacher.state_dict())
    return digest.hexdigest()[:16]


@functools.cache
def _multipliers(n_words: int) -> np.ndarray:
    return np.random.default_rng(12345).integers(1, 2**62, size=n_words, dtype=np.uint64) | np.uint64(1)


class TeacherOutputCache:
    """Teacher outputs for the samples of one split, keyed by the sample index."""

    def __init__(self, root: Path, key: dict[str, str], num_samples: int):
        self.key = {**key, "num_samples": str(num_samples), "format": str(FORMAT_VERSION)}
        name = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = Path(root) / name
        self.num_samples = num_samples
        self.arrays: dict[str, np.ndarray] = {}
        self._maps: list[np.memmap] = []  # the open files behind self.arrays, filled and checksum
        self.stats = {"hits": 0, "misses": 0, "corrupt": 0}

    # -- opening -------------------------------------------------------------
    def _open(self, example: dict[str, np.ndarray] | None) -> bool:
        """Map the files; create them from ``example`` row shapes when absent. False if absent."""
        if self.arrays:
            return True
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir) + ".lock"):
            meta_path = self.dir / "meta.json"
            meta = self._read_meta(meta_path)
            if meta is None:
                if example is None:
                    return False
                shapes = {name: [int(s) for s in row.shape[1:]] for name, row in example.items()}
                self._create(shapes)
                meta = {"key": self.key, "shapes": shapes}
                atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True))
            try:
                self._maps = [np.load(self.dir / f"{name}.npy", mmap_mode="r+") for name in meta["shapes"]]
                self._maps += [np.load(self.dir / f"{name}.npy", mmap_mode="r+") for name in ("filled", "checksum")]
                # Plain ndarray views of the maps: numpy indexes them faster than np.memmap objects.
                views = [np.asarray(m) for m in self._maps]
                self.arrays = dict(zip(meta["shapes"], views[:-2], strict=True))
                self.filled, self.checksum = views[-2], views[-1]
                self._check_shapes(meta["shapes"])
            except (OSError, ValueError) as err:
                log.warning("teacher cache %s is damaged (%s): rebuilding it", self.dir, err)
                self.arrays, self._maps = {}, []
                (self.dir / "meta.json").unlink(missing_ok=True)
                if example is None:
                    return False
                return self._open(example)
        return True

    def _read_meta(self, path: Path) -> dict | None:
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            log.warning("teacher cache %s: unreadable meta.json, rebuilding", self.dir)
            return None
        if meta.get("key") != self.key:
            log.warning("teacher cache %s: stale (written for other teachers or data), rebuilding", self.dir)
            return None
        return meta

    def _create(self, shapes: dict[str, list[int]]) -> None:
        for name, shape in shapes.items():
            np.lib.format.open_memmap(self.dir / f"{name}.npy", mode="w+", dtype=np.float32,
                                      shape=(self.num_samples, *shape)).flush()
        np.lib.format.open_memmap(self.dir / "filled.npy", mode="w+", dtype=np.uint8,
                                  shape=(self.num_samples,)).flush()
        np.lib.format.open_memmap(self.dir / "checksum.npy", mode="w+", dtype=np.uint64,
                                  shape=(self.num_samples,)).flush()

    def _check_shapes(self, shapes: dict[str, list[int]]) -> None:
        for name, shape in shapes.items():
            if self.arrays[name].shape != (self.num_samples, *shape):
                raise ValueError(f"{name}.npy has shape {self.arrays[name].shape}")
        if self.filled.shape != (self.num_samples,) or self.checksum.shape != (self.num_samples,):
            raise ValueError("filled.npy or checksum.npy has the wrong length")

    # -- reading and writing ---------------------------------------------------
    def _row_checksums(self, rows: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        words = np.concatenate([np.ascontiguousarray(rows[name], dtype=np.float32).reshape(len(r), -1)
                                .view(np.uint32) for name, r in sorted(rows.items())], axis=1)
        content = (words.astype(np.uint64) * _multipliers(words.shape[1])).sum(axis=1, dtype=np.uint64)
        return content + (idx.astype(np.uint64) + np.uint64(1)) * INDEX_SALT

    def lookup(self, index: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """The stored outputs of every sample in ``index``, or None if any is missing or corrupt."""
        if not self._open(None):
            self.stats["misses"] += len(index)
            return None
        idx = index.cpu().numpy()
        if not self.filled[idx].all():
            self.stats["misses"] += len(idx)
            return None
        rows = {name: array[idx] for name, array in self.arrays.items()}
        bad = self._row_checksums(rows, idx) != self.checksum[idx]
        if bad.any():
            self.stats["corrupt"] += int(bad.sum())
            log.warning("teacher cache %s: %d corrupt row(s), recomputing them", self.dir, int(bad.sum()))
            return None
        self.stats["hits"] += len(idx)
        return {name: torch.from_numpy(row) for name, row in rows.items()}

    def store(self, index: torch.Tensor, outputs: dict[str, torch.Tensor]) -> None:
        rows = {name: value.detach().float().cpu().numpy() for name, value in outputs.items()}
        self._open(rows)
        idx = index.cpu().numpy()
        for name, row in rows.items():
            self.arrays[name][idx] = row
        self.checksum[idx] = self._row_checksums(rows, idx)
        self.filled[idx] = 1  # last: a row counts only once data and checksum are in place

    def flush(self) -> None:
        for mapped in self._maps:
            mapped.flush()

    def coverage(self) -> float:
        return float(self.filled.mean()) if self._open(None) else 0.0
