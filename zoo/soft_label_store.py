"""Region-level soft-label store: the teachers' soft label of every training crop, per sample and epoch.

After FKD (Shen & Xing, "A Fast Knowledge Distillation Framework for Visual
Recognition", ECCV 2022, by MEAL V2's authors): with random-crop training the
teachers' outputs change every epoch, so the teacher-output cache cannot help;
instead the crops themselves are fixed in advance (``zoo.data.region_crops``) and
the ensemble's soft label of each crop is computed once and stored. Later epochs
and later runs then train from the store without running the teachers.

What is stored, per sample and epoch: the crop ``(top, left, height, width, flip)``
and the top-k of the ensemble's mean softmax p_T = (1/K) Σ_k softmax(t_k). A label is
rebuilt FKD-style ("marginal smoothing"): the k stored probabilities where they
were, the remaining mass 1 - Σ top-k spread evenly over the other C - k classes.
With k = C the label is exact. Methods read it as teacher logits log p_T, so a soft
cross-entropy sees exactly p_T (MEAL V2's discriminator then sees log p_T instead of
the mean raw logits, which the store does not keep).

File format, version 1 — a folder:
    store.json          {"format": "zoo-region-soft-labels", "version": 1, "key": {...},
                         "epochs": {"<e>": {"file": "epoch-0000.npz", "sha256": "..."}}}
    epoch-0000.npz      crops [N, 5] float32, topk_index [N, k] int16, topk_prob [N, k] float16
The key names the teachers (weights fingerprint), data, crop spec, top-k and
sample count; a store opened with a different key is an error naming the fields
that differ. Generation is resumable by epoch: each epoch file is written to a
temporary name, renamed, hashed, and only then listed in store.json (itself
replaced atomically), so an interrupted generation loses at most the epoch in
progress, and a file whose hash does not match is regenerated, never read.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from zoo.atomic import atomic_write_text
from zoo.errors import CacheError
from zoo.weights import sha256_file

FORMAT, VERSION = "zoo-region-soft-labels", 1


def rebuild_soft_labels(topk_index: np.ndarray, topk_prob: np.ndarray, num_classes: int) -> torch.Tensor:
    """[B, C] probabilities from top-k: stored entries kept, the rest of the mass spread evenly over the others."""
    index = torch.from_numpy(topk_index.astype(np.int64))
    prob = torch.from_numpy(topk_prob.astype(np.float32))
    k = index.shape[1]
    rest = (1.0 - prob.sum(dim=1, keepdim=True)).clamp_min(0.0)
    labels = (rest / max(num_classes - k, 1)).expand(-1, num_classes).clone() if k < num_classes \
        else torch.zeros(len(index), num_classes)
    return labels.scatter_(1, index, prob)


def ensemble_topk(teacher_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (indices, probabilities) of the mean softmax of [B, K, C] teacher logits."""
    mean_prob = torch.softmax(teacher_logits.float(), dim=-1).mean(dim=1)
    prob, index = mean_prob.topk(k, dim=-1)
    return index, prob


class SoftLabelStore:
    def __init__(self, folder: Path, key: dict[str, Any]):
        self.folder = Path(folder)
        self.key = key
        self.num_samples, self.num_classes, self.top_k = int(key["num_samples"]), int(key["num_classes"]), \
            int(key["top_k"])
        self.stats = {"epochs_generated": 0, "epochs_reused": 0, "labels_served": 0}
        self._epoch: tuple[int, dict[str, np.ndarray]] | None = None
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest = self._open_manifest()

    # -- manifest ------------------------------------------------------------
    def _open_manifest(self) -> dict[str, Any]:
        path = self.folder / "store.json"
        if not path.is_file():
            manifest = {"format": FORMAT, "version": VERSION, "key": self.key, "epochs": {}}
            atomic_write_text(path, json.dumps(manifest, indent=1, sort_keys=True))
            return manifest
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CacheError(f"{path}: not a readable soft-label store manifest ({err})",
                             f"delete {self.folder} to regenerate it") from err
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise CacheError(f"{path}: format {manifest.get('format')} v{manifest.get('version')}, "
                             f"this zoo reads {FORMAT} v{VERSION}", f"delete {self.folder} to regenerate it")
        stored = manifest.get("key", {})
        differ = sorted(k for k in set(stored) | set(self.key) if stored.get(k) != self.key.get(k))
        if differ:
            detail = ", ".join(f"{k}: store {stored.get(k)!r} vs task {self.key.get(k)!r}" for k in differ)
            raise CacheError(f"soft-label store {self.folder} was made for other inputs ({detail})",
                             "point soft_labels.dir at another folder (or null for the default), or delete it")
        return manifest

    def _save_manifest(self) -> None:
        atomic_write_text(self.folder / "store.json", json.dumps(self.manifest, indent=1, sort_keys=True))

    def complete(self, epoch: int) -> bool:
        entry = self.manifest["epochs"].get(str(epoch))
        return entry is not None and (self.folder / entry["file"]).is_file()

    # -- generation ----------------------------------------------------------
    def generate(self, epochs: int, crops_of_epoch, label_batches, say=print) -> None:
        """Write every missing or damaged epoch in 0..epochs-1.

        ``crops_of_epoch(e)`` gives the [N, 5] crop table; ``label_batches(e, crops)`` yields
        (indices, topk_index, topk_prob) batches covering every sample once.
        """
        with FileLock(str(self.folder / "store.lock")):
            self.manifest = self._open_manifest()
            todo = [e for e in range(epochs) if not self._verified(e)]
            self.stats["epochs_reused"] = epochs - len(todo)
            if todo:
                say(f"soft-label store {self.folder}: generating {len(todo)} of {epochs} epoch(s)")
            for epoch in todo:
                crops = crops_of_epoch(epoch)
                topk_index = np.zeros((self.num_samples, self.top_k), dtype=np.int16)
                topk_prob = np.zeros((self.num_samples, self.top_k), dtype=np.float16)
                filled = np.zeros(self.num_samples, dtype=bool)
                for indices, index, prob in label_batches(epoch, crops):
                    topk_index[indices], topk_prob[indices], filled[indices] = index, prob, True
                if not filled.all():
                    raise CacheError(f"soft-label generation for epoch {epoch} left {int((~filled).sum())} "
                                     f"sample(s) without a label")
                self._write_epoch(epoch, crops, topk_index, topk_prob)
                self.stats["epochs_generated"] += 1

    def _verified(self, epoch: int) -> bool:
        entry = self.manifest["epochs"].get(str(epoch))
        if entry is None:
            return False
        path = self.folder / entry["file"]
        return path.is_file() and sha256_file(path) == entry["sha256"]

    def _write_epoch(self, epoch: int, crops: np.ndarray, topk_index: np.ndarray, topk_prob: np.ndarray) -> None:
        name = f"epoch-{epoch:04d}.npz"
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            np.savez(handle, crops=crops.astype(np.float32), topk_index=topk_index, topk_prob=topk_prob)
        os.replace(tmp, self.folder / name)
        self.manifest["epochs"][str(epoch)] = {"file": name, "sha256": sha256_file(self.folder / name)}
        self._save_manifest()

    # -- reading -------------------------------------------------------------
    def _load(self, epoch: int) -> dict[str, np.ndarray]:
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        entry = self.manifest["epochs"].get(str(epoch))
        if entry is None:
            stored = len(self.manifest["epochs"])
            raise CacheError(f"soft-label store {self.folder} has no epoch {epoch} (it holds {stored})",
                             "the store is generated up to trainer.max_epochs before training starts")
        path = self.folder / entry["file"]
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise CacheError(f"{path}: missing or does not match its sha256 in store.json",
                             "run again to regenerate the damaged epoch")
        with np.load(path) as data:
            arrays = {name: data[name] for name in ("crops", "topk_index", "topk_prob")}
        if arrays["crops"].shape != (self.num_samples, 5) or arrays["topk_index"].shape != (self.num_samples,
                                                                                              self.top_k):
            raise CacheError(f"{path}: arrays of the wrong shape for this store", "delete the store to regenerate it")
        self._epoch = (epoch, arrays)
        return arrays

    def crops(self, epoch: int) -> np.ndarray:
        return self._load(epoch)["crops"]

    def soft_labels(self, epoch: int, indices: np.ndarray) -> torch.Tensor:
        arrays = self._load(epoch)
        self.stats["labels_served"] += len(indices)
        return rebuild_soft_labels(arrays["topk_index"][indices], arrays["topk_prob"][indices], self.num_classes)


def store_key(teacher_fingerprint: str, datamodule, top_k: int) -> dict[str, Any]:
    return {"teachers": teacher_fingerprint, "data": datamodule.fingerprint,
            "crops": datamodule.crop_spec.fingerprint(), "top_k": int(top_k),
            "num_classes": int(datamodule.num_classes), "num_samples": len(datamodule.splits["train"]),
            "split": "train"}


def default_folder(root: Path, key: dict[str, Any]) -> Path:
    return Path(root) / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def prepare_store(cfg: Any, datamodule, teachers: list[torch.nn.Module], teacher_names: list[str],
                  say=print) -> SoftLabelStore:
    """Open (or generate the missing epochs of) the task's store and attach it to the training split."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from zoo.errors import ConfigError
    from zoo.paths import zoo_home
    from zoo.teacher_cache import teacher_fingerprint

    train_set = datamodule.splits["train"]
    if datamodule.crop_spec is None:  # declared exactly when the training split serves seeded crops (crop_batch)
        raise ConfigError(f"soft_labels.enabled needs seeded random-crop training, which data '{datamodule.name}' "
                          "is not set up for", "set data.augment.enabled=true (fashion_mnist, imagefolder), or "
                          "soft_labels.enabled=false to run the teachers online")
    options = cfg.soft_labels
    key = store_key(teacher_fingerprint(teacher_names, teachers), datamodule, int(options.top_k))
    if not 1 <= key["top_k"] <= key["num_classes"]:
        raise ConfigError(f"soft_labels.top_k={key['top_k']} must be between 1 and the {key['num_classes']} classes")
    folder = Path(options.dir).expanduser() if options.dir else default_folder(zoo_home() / "soft_labels", key)
    store = SoftLabelStore(folder, key)
    device = torch.device("cuda" if cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available()
                          else "cpu")
    batch_size, total = int(options.batch_size), len(train_set)

    with Progress(TextColumn("soft labels, epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), disable=not cfg.trainer.enable_progress_bar, transient=True) as progress:
        bar = progress.add_task("labels", total=total, epoch=0)

        def label_batches(epoch: int, crops: np.ndarray):
            progress.reset(bar, total=total, epoch=epoch)
            for model in teachers:
                model.to(device).eval()
            for start in range(0, total, batch_size):
                indices = np.arange(start, min(total, start + batch_size))
                images = train_set.crop_batch(indices, torch.from_numpy(crops[indices])).to(device)
                with torch.no_grad():
                    logits = torch.stack([model(images) for model in teachers], dim=1)
                index, prob = ensemble_topk(logits, store.top_k)
                progress.advance(bar, len(indices))
                yield indices, index.cpu().numpy().astype(np.int16), prob.cpu().numpy().astype(np.float16)

        epochs = 1 if cfg.trainer.fast_dev_run else int(cfg.trainer.max_epochs)
        store.generate(epochs, lambda epoch: train_set.sample_crops(epoch), label_batches, say)
    train_set.attach_store(store)
    return store
