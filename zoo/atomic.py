"""Files and folders that appear whole or not at all.

- ``atomic_write_text(path, text)``: a temp file in the same folder, fsynced, renamed over ``path``;
- ``write_json(path, data)``: plain JSON text (for a folder that is itself being built atomically);
- ``atomic_folder(out, may_replace=...)``: a hidden temp folder beside ``out`` to build in, renamed into place when
  the block succeeds and deleted when it fails, so a folder named ``out`` is always complete. An ``out`` that exists
  is replaced only when ``may_replace(out)`` says it is one the zoo wrote; anything else is an error, and
  nothing of the user's is touched.

Files and folders get the user's umask (temp files and folders are created private; the published ones are not).
"""

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would keep the file from anyone else's web server
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_folder(out: Path, may_replace: Callable[[Path], bool], what: str = "a folder the zoo wrote",
                  hint: str = "pass another output folder") -> Iterator[Path]:
    """Yield a temp folder to build ``out`` in; see the module docstring. ``what`` names what may be replaced."""
    out = Path(out)
    if out.exists() and not may_replace(out):
        raise ConfigError(f"'{out}' exists and is not {what}; it is left as it is", hint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        _rename_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rename_into_place(tmp: Path, out: Path) -> None:
    """An earlier ``out`` is moved aside first and deleted once the new one is in place."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.{os.urandom(3).hex()}.old")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
