"""Errors the zoo raises on purpose, and the environment's errors it explains.

Every one carries a one-line message and, where there is one, a hint: the CLI
prints ``error: <message>`` and ``hint: <hint>`` and exits with code 2 (130 for
``Interrupted``). ``environment_error`` turns the operating system's refusals
(a full disk, a read-only folder, a file where a folder belongs, a Hub that
cannot be reached) into such errors, naming the path and what to do about it.
"""

import difflib
import errno
import os
from collections.abc import Iterable
from pathlib import Path


class ZooError(Exception):
    """Base of every error the zoo raises for bad input or a bad state."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class ConfigError(ZooError):
    """Unknown key, wrong type, unknown task or group option."""


class UnknownNameError(ZooError):
    """A registry, task or model-card lookup found nothing."""


class DataError(ZooError):
    """Missing, corrupt or malformed data."""


class CheckpointError(ZooError):
    """A checkpoint, weights or model file that cannot be read, or no longer matches the sha256 written for it."""


class RecordError(ZooError):
    """A run record that is missing, corrupt or fails validation."""


class CacheError(ZooError):
    """A teacher-output cache that does not match what it is asked to serve."""


class Interrupted(ZooError):
    """Ctrl-C during training: says what was kept and how to go on; the CLI exits 130, as for any interrupt."""


# errno -> how the message names the failure. EPERM: what a read-only (chattr +i) folder answers even to root.
_REFUSALS = {errno.ENOSPC: "no space left on the device of", errno.EDQUOT: "disk quota exceeded for",
             errno.EACCES: "permission denied for", errno.EPERM: "operation not permitted on",
             errno.EROFS: "read-only file system at"}
_FULL = (errno.ENOSPC, errno.EDQUOT)
_IN_THE_WAY = (errno.ENOTDIR, errno.EEXIST)  # EEXIST: mkdir on a file (checked: only then is it ours to explain)


def unwritable(err: BaseException) -> bool:
    """Whether ``err`` is the file system refusing a write: no permission, read-only, or a file in a folder's place."""
    return isinstance(err, OSError) and err.errno in (*_REFUSALS, *_IN_THE_WAY) and err.errno not in _FULL


def environment_error(err: OSError, then: str | None = None) -> ZooError | None:
    """One line for an OSError the user's environment caused, naming the path, with a hint for where it happened;
    ``then`` is added to the hint (e.g. how to resume). None for any other OSError (a bug: keep its traceback)."""
    if hub_unreachable(err):
        return ZooError(f"a file from the Hugging Face Hub is not in the local cache and the Hub cannot be reached "
                        f"({_first_line(err)})", _join("connect to the network once (files are cached in HF_HOME, "
                                                       "~/.cache/huggingface), or copy in a cache that has them", then))
    path = err.filename2 if err.errno in _FULL and err.filename2 else err.filename  # a copy fails on its target
    path = os.fsdecode(path) if path else None
    if err.errno in _IN_THE_WAY:
        blocker = _file_in_the_way(Path(path)) if path else None
        if blocker is None:
            return None
        return ZooError(f"'{blocker}' is a file where a folder is needed (to write '{path}')",
                        _join(_where_hint(path, "move that file away"), then))
    if err.errno not in _REFUSALS:
        return None
    fix = "free space there (df -h)" if err.errno in _FULL else "make it writable"
    return ZooError(f"{_REFUSALS[err.errno]} '{path}'" if path else f"{_REFUSALS[err.errno]} the file being written",
                    _join(_where_hint(path, fix), then))


def _where_hint(path: str | None, fix: str) -> str:
    """What to do, by whose folder ``path`` is in: ZOO_HOME's stores and caches, or a run / export folder."""
    from zoo.paths import teacher_outputs_dir, zoo_home

    home = zoo_home()
    if path and _inside(Path(path), home):
        cache = _inside(Path(path), teacher_outputs_dir())
        return (f"{fix}, or set ZOO_HOME (now {home}: stored teachers, caches, downloads) to a folder you can write"
                + ("; cache.enabled=false keeps teacher outputs off disk" if cache else ""))
    return f"{fix}, or write elsewhere: run.root=DIR for run folders, out=DIR for exports and indexes"


def hub_unreachable(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is the Hugging Face Hub saying a file is not cached and it is offline or
    unreachable (transformers wraps those in a plain OSError)."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError:
        return False
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _join(hint: str, then: str | None) -> str:
    return f"{hint}; {then}" if then else hint


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _file_in_the_way(path: Path) -> Path | None:
    """The file among ``path``'s parents (or ``path`` itself, for a mkdir) that stands where a folder should be."""
    for candidate in (path, *path.parents):
        if candidate.is_file():
            return candidate
    return None


def nearest(name: str, choices: Iterable[str]) -> str | None:
    """The closest choice to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str], what: str) -> str:
    """A hint listing valid ``what``s, naming the nearest first when there is one."""
    choices = sorted(choices)
    close = nearest(name, choices)
    listed = ", ".join(choices) if len(choices) <= 25 else ", ".join(choices[:25]) + ", ..."
    if close:
        return f"did you mean '{close}'? valid {what}: {listed}"
    return f"valid {what}: {listed}"
