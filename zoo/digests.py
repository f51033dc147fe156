"""Content hashes of files, with nothing but hashlib: the deploy-side runtime (``zoo.export.runtime``, which must
load without torch) checks exports with them too.

``sha256_file`` hashes a file in blocks; ``check_sha256`` refuses a file that does not match the sha256 written for
it when it was made (a weights file, a checkpoint, a model.onnx), with a one-line ``CheckpointError``. A sha256
cannot be satisfied by zeroed or flipped bytes, unlike a sum of the data.
"""

import hashlib
from pathlib import Path

from zoo.errors import CheckpointError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str | set[str], listed_in: str, hint: str) -> None:
    """Raise unless ``path`` exists and its sha256 is ``expected`` (or one of them); ``listed_in`` names where the
    expected hash was written, ``hint`` what the user can do."""
    path = Path(path)
    accepted = {expected} if isinstance(expected, str) else set(expected)
    if not path.is_file():
        raise CheckpointError(f"'{path}' is missing (its sha256 is listed in {listed_in})", hint)
    if sha256_file(path) not in accepted:
        raise CheckpointError(f"'{path}' does not match its sha256 in {listed_in}: it changed after it was written",
                              hint)
