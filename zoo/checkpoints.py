"""Lightning checkpoints that appear whole and carry their sha256: ``last.ckpt`` beside ``last.ckpt.sha256``.

Lightning's own writer goes through fsspec: a temp file in the system's temp folder, then ``shutil.move``, which
across file systems copies into place, so a disk that fills mid-copy leaves a truncated ``last.ckpt``; and nothing
hashes the file, so bytes damaged later inside its tensor data still load, and the run resumes from garbage (NaN
loss, chance accuracy). ``HashedCheckpointIO``, the checkpoint plugin of every zoo Trainer (``zoo.fitting``), writes
each checkpoint with ``zoo.atomic.atomic_write_bytes`` (a temp file beside it, fsynced, renamed) and its sha256
beside it; ``verify_checkpoint`` checks the file against it before a resume.

The sidecar is JSON, ``{"file": "last.ckpt", "sha256": ..., "size": ...}``. Two files cannot be replaced in one
step, so while a new checkpoint replaces an old one the sidecar names both (``"replacing"``: the old file's hash):
a crash at any moment leaves a checkpoint that its sidecar accepts. A checkpoint without a sidecar (from before the
zoo wrote them) is accepted if it loads, as before.
"""

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zoo.atomic import atomic_write_bytes, atomic_write_text
from zoo.digests import check_sha256, sha256_file
from zoo.errors import CheckpointError

RESUME_HINT = "nothing was changed; delete that file to restart the run from its beginning, or pass run.resume=false"


def sidecar_of(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


class HashedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic and hashed (see the module docstring). Runs on rank 0 only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:  # as TorchCheckpointIO: no storage options for a local file
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_checkpoint(Path(path), buffer.getbuffer())

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        sidecar_of(Path(path)).unlink(missing_ok=True)


def write_checkpoint(path: Path, data: bytes | memoryview) -> None:
    """``data`` as ``path``, atomically, with the sidecar naming its sha256 (old and new while it is replaced)."""
    digest, sidecar = hashlib.sha256(data).hexdigest(), sidecar_of(path)
    entry, previous = {"file": path.name, "sha256": digest, "size": len(data)}, _current_hash(path)
    atomic_write_text(sidecar, json.dumps({**entry, "replacing": previous}))
    try:
        atomic_write_bytes(path, data)
    except BaseException:  # e.g. a full disk: the old checkpoint (or none) stays, and its sidecar says only it
        _restore_sidecar(path, previous)
        raise
    atomic_write_text(sidecar, json.dumps(entry))


def _restore_sidecar(path: Path, previous: str | None) -> None:
    sidecar = sidecar_of(path)
    if previous is None or not path.is_file():
        sidecar.unlink(missing_ok=True)
        return
    try:
        atomic_write_text(sidecar, json.dumps({"file": path.name, "sha256": previous, "size": path.stat().st_size}))
    except OSError:
        pass  # the sidecar still names both hashes, and the old checkpoint matches one of them


def _current_hash(path: Path) -> str | None:
    """The hash of the checkpoint about to be replaced: its sidecar's, else (none yet, or unreadable) the file's."""
    try:
        return str(json.loads(sidecar_of(path).read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return sha256_file(path) if path.is_file() else None


def verify_checkpoint(path: Path) -> None:
    """Raise a one-line ``CheckpointError`` unless ``path`` matches its sidecar (when it has one) and loads."""
    path = Path(path)
    sidecar = sidecar_of(path)
    if path.is_file() and sidecar.exists():  # a sharded checkpoint is a folder: Lightning writes that one itself
        try:
            listed = json.loads(sidecar.read_text())
            accepted = {listed["sha256"], listed.get("replacing")} - {None}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"'{sidecar}' is unreadable ({err}), so '{path}' cannot be verified",
                                  RESUME_HINT) from err
        check_sha256(path, accepted, sidecar.name, RESUME_HINT)
    try:
        torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint '{path}' is corrupt or truncated ({str(err).splitlines()[0]})",
                              RESUME_HINT) from err
