"""Files and folders that appear whole or not at all.

- ``atomic_write_text(path, text)``: a temp file in the same folder, fsynced, renamed over ``path``;
- ``write_json(path, data)``: plain JSON text (for a folder that is itself being built atomically);
- ``atomic_folder(out, may_replace=...)``: a hidden temp folder beside ``out`` to build in, renamed into place when
  the block succeeds and deleted when it fails, so a folder named ``out`` is always complete. An ``out`` that exists
  is replaced only when ``may_replace(out)`` says it is one the zoo wrote; anything else is an error, and
  nothing of the user's is touched. Replacing one replaces only what the zoo wrote there (named in its
  ``.zoo-written`` list): files the user added are moved into the new folder, and one whose name the new folder
  needs is an error before anything moves;
- ``build_once(folder, build)``: a generated data set written once: ``build(temp)`` into a hidden temp folder beside
  ``folder``, renamed into place; an existing ``folder`` is left alone (its reader verifies it).

Files and folders get the user's umask (temp files and folders are created private; the published ones are not).
"""

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

WRITTEN = ".zoo-written"  # in a folder atomic_folder made: the names it put there (the rest is the user's)


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
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # a failed write() names no file: name the target
            raise OSError(err.errno, err.strerror, str(path)) from err
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


def build_once(folder: Path, build: Callable[[Path], None]) -> None:
    """``build(temp)`` into a hidden temp folder beside ``folder``, then renamed to ``folder``; nothing if ``folder``
    exists. Two processes may build at once: the second rename finds the first one's folder and keeps it."""
    folder = Path(folder)
    if folder.exists():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        build(temp)
        try:
            os.rename(temp, folder)
        except OSError:
            if not folder.is_dir():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _rename_into_place(tmp: Path, out: Path) -> None:
    """An earlier ``out`` is moved aside first, the files the user added to it are moved into the new one, and only
    then is the rest deleted: whatever fails on the way, nothing of the user's is lost (at worst it waits in the hidden
    ``.<out>.*.old`` folder beside ``out``)."""
    new = sorted(p.name for p in tmp.iterdir())
    Path(tmp, WRITTEN).write_text("".join(f"{name}\n" for name in new), encoding="utf-8")
    if not out.exists():
        os.rename(tmp, out)
        return
    theirs = _added_by_user(out, new)
    clash = sorted(set(theirs) & set(new))
    if clash:
        raise ConfigError(f"'{out}' holds {', '.join(clash)}, which the zoo did not write there and would replace",
                          "move those files away (or pass another output folder); nothing was changed")
    old = out.with_name(f".{out.name}.{os.urandom(3).hex()}.old")
    os.rename(out, old)
    os.rename(tmp, out)
    for name in theirs:
        os.rename(old / name, out / name)
    shutil.rmtree(old, ignore_errors=True)


def _added_by_user(folder: Path, new: list[str]) -> list[str]:
    """The entries of ``folder`` the zoo did not write: not in its ``.zoo-written`` list, or, in a folder from before
    there was one, not among the names the new build writes."""
    written = folder / WRITTEN
    ours = set(written.read_text(encoding="utf-8").split("\n")) if written.is_file() else set(new)
    return sorted(p.name for p in folder.iterdir() if p.name != WRITTEN and p.name not in ours)
