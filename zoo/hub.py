"""Download, verify and cache a model card's weights: ZOO_HOME/weights/<card>/<file>.

    path = download(zoo.catalog.get_card("resnet50.mealv2_in1k"))   # any card, from any source

What it guarantees:

- **Mirrors.** ``card.weights.urls`` are tried in order; a 404 (or any other failure) on one moves to the
  next, and when all fail the DownloadError lists every URL and why. Schemes: https://, http://, file://,
  and hf://org/repo/path/in/repo[@revision] (the hub's own hf://org/repo@revision/path also works), which
  goes through ``huggingface_hub.hf_hub_download`` and its cache, then is copied into ours.
- **Atomic, resumable files.** Bytes go to ``<file>.part`` beside the target and are renamed into place only
  after verification. A ``.part`` left by an interrupted run is resumed with an HTTP Range request; a server
  that ignores Range (answers 200) gets a full download instead.
- **Retries.** Connection errors, cut transfers, 5xx, 408 and 429 are retried with exponential backoff
  (``RETRIES`` and ``BACKOFF_S``, or the keyword arguments, so tests run fast).
- **Verification.** sha256 must match ``card.weights.sha256`` and the length ``card.weights.size``; a mismatch
  deletes the download. A server whose Content-Length differs from the card's size is refused before any byte is
  kept, and a transfer that ends short of its Content-Length is retried, then refused, never kept.
- **Unverified files say so.** When the card's hash is null (the three MEAL-V2 cards: upstream publishes none)
  there is nothing to verify against. The file must still be whole by its own structure (a safetensors file as long
  as its header says, a zip-format ``.pth`` readable as a whole zip; a file cut short is deleted), and its hash is
  then pinned in ``first_download.json`` beside it, marked ``"verified": false``: every later use is checked against
  that first download (trust on first use), and ``verification(card)`` says "unverified" in words.
- **Offline.** With ZOO_OFFLINE=1 or HF_HUB_OFFLINE=1 only the cache is used.
- **Concurrency.** A file lock per card means two processes downloading the same card leave one good file:
  the second waits, then finds the first one's verified file.

Why not pooch: ``pooch.retrieve`` / ``HTTPDownloader`` (pooch 1.9) stream into a fresh randomly named temp file
opened with ``"w+b"`` and delete it on any failure, and never send Range, so an interrupted 100 MB transfer
always restarts from byte 0; its retry waits are fixed (1, 2, ... s) and its bar is tqdm. Resume is the point
here, so this module carries its own small requests-based downloader.
"""

import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from zoo.cards import ModelCard
from zoo.errors import ZooError
from zoo.paths import zoo_home

RETRIES = 3  # extra attempts per mirror after the first
BACKOFF_S = 1.0  # waits 1, 2, 4 s between attempts, capped at MAX_BACKOFF_S
MAX_BACKOFF_S = 30.0
TIMEOUT_S = (10, 60)  # connect, read
CHUNK = 1 << 16  # a cut connection loses the unwritten chunk, so keep it small
OFFLINE_VARS = ("ZOO_OFFLINE", "HF_HUB_OFFLINE")
RECORD = "first_download.json"  # the pinned hash of a card without one
LEGACY_RECORD = "verified.json"  # older zoos wrote this one, possibly for a truncated file: not trusted


class DownloadError(ZooError):
    """Weights that could not be fetched, or that failed verification."""


class _MirrorFailed(Exception):
    """One URL is given up on; the message says why and ends up in the DownloadError."""


class _Retry(Exception):
    """A transient failure of one attempt: wait, then try the same URL again."""


def is_offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on") for var in OFFLINE_VARS)


def weights_dir(card_name: str) -> Path:
    return zoo_home() / "weights" / card_name


def cached_path(card: ModelCard) -> Path:
    """Where ``download`` puts the card's weights: named after the first URL's file."""
    first = card.weights.urls[0]
    name = parse_hf_url(first)[1] if first.startswith("hf://") else unquote(urlparse(first).path)
    name = name.rsplit("/", 1)[-1] or "weights"
    # zoo.weights picks the reader by suffix: only safetensors needs the right one.
    if card.weights.format == "safetensors" and not name.endswith(".safetensors"):
        name += ".safetensors"
    return weights_dir(card.name) / name


def parse_hf_url(url: str) -> tuple[str, str, str | None]:
    """``hf://org/repo/path/in/repo[@rev]`` or ``hf://org/repo@rev/path`` -> (repo_id, path_in_repo, revision)."""
    parts = url.removeprefix("hf://").split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"'{url}' is not hf://org/repo/path/in/repo[@revision]")
    repo, revision = parts[1].split("@", 1) if "@" in parts[1] else (parts[1], None)
    path = "/".join(parts[2:])
    if revision is None and "@" in parts[-1]:
        path, revision = path.rsplit("@", 1)
    return f"{parts[0]}/{repo}", path, revision


def download(card: ModelCard, *, progress: bool = True, retries: int | None = None,
             backoff_s: float | None = None) -> Path:
    """The card's verified weights file in the cache, downloading it first when needed."""
    from filelock import FileLock

    target = cached_path(card)
    locks = zoo_home() / "weights" / ".locks"  # outside the card folder, so a failure leaves that folder empty
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{card.name}.lock")):
        target.parent.mkdir(parents=True, exist_ok=True)
        if _cached_ok(card, target):
            return target
        if is_offline():
            _drop_if_empty(target.parent)
            raise DownloadError(f"offline ({' or '.join(OFFLINE_VARS)} is set) and the weights of '{card.name}' "
                                "are not in the cache",
                                f"unset it and run `zoo download {card.name}`, or copy the file to {target}")
        try:
            return _download(card, target, progress, RETRIES if retries is None else retries,
                             BACKOFF_S if backoff_s is None else backoff_s)
        finally:
            _drop_if_empty(target.parent)


def _expected_sha(card: ModelCard, folder: Path) -> str | None:
    if card.weights.sha256:
        return card.weights.sha256
    record = folder / RECORD
    return json.loads(record.read_text(encoding="utf-8"))["sha256"] if record.is_file() else None


def _record(card: ModelCard, target: Path, digest: str, source: str) -> None:
    """Pin the first download of a card without a hash. "verified": false, because nothing published vouches for
    it: it only lets every later use be checked against this one."""
    from zoo.atomic import atomic_write_text

    record = {"sha256": digest, "size": target.stat().st_size, "file": target.name, "source": source,
              "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "verified": False,
              "why": "the card publishes no sha256: this is the first download's, trusted on first use"}
    atomic_write_text(target.parent / RECORD, json.dumps(record, indent=2) + "\n")
    (target.parent / LEGACY_RECORD).unlink(missing_ok=True)
    _warn(f"the weights of '{card.name}' are unverified: the card publishes no sha256, so the first "
          f"download's ({digest[:12]}...) is pinned and later uses are checked against it")


def verification(card: ModelCard) -> str:
    """In words, what the cached weights of ``card`` were checked against (after ``download``)."""
    if card.weights.sha256:
        return f"verified: sha256 {card.weights.sha256} from the model card"
    record = weights_dir(card.name) / RECORD
    if not record.is_file():
        return "unverified: the card publishes no sha256 and nothing is cached yet"
    pinned = json.loads(record.read_text(encoding="utf-8"))
    return (f"unverified: the card publishes no sha256; this file's ({pinned['sha256']}, {pinned['size']} bytes) "
            f"was pinned at its first download on {pinned['recorded']} and later uses are checked against it")


def _cached_ok(card: ModelCard, target: Path) -> bool:
    """True when the cached file passes its hash; a file that fails is deleted (it is only a cache)."""
    from zoo.weights import sha256_file

    if not target.is_file():
        return False
    expected = _expected_sha(card, target.parent)
    if expected is None:  # placed by hand, or left by a zoo that trusted it without checks: check what can be
        problem = _whole_problem(card, target)
        if problem is None:
            _record(card, target, sha256_file(target), source="found in cache")
            return True
        target.unlink()
        _warn(f"cached weights of '{card.name}' were deleted: {problem}")
        return False
    digest = sha256_file(target)
    if digest == expected:
        return True
    target.unlink()
    if is_offline():
        raise DownloadError(f"the cached weights of '{card.name}' fail their sha256 check (expected {expected}, "
                            f"got {digest}); the file was deleted and offline mode cannot fetch it again",
                            f"unset {' and '.join(OFFLINE_VARS)} and run `zoo download {card.name}`")
    _warn(f"cached weights of '{card.name}' changed since they were checked; downloading them again")
    return False


def _whole_problem(card: ModelCard, path: Path, structure: bool = True) -> str | None:
    """What can be checked without a hash: the card's size, then (``structure``) the file's own framing."""
    size = path.stat().st_size
    if card.weights.size is not None and size != card.weights.size:
        return f"size {size} bytes, the card says {card.weights.size}"
    return structure_problem(path, card.weights.format) if structure else None


def _download(card: ModelCard, target: Path, progress: bool, retries: int, backoff_s: float) -> Path:
    from zoo.weights import sha256_file

    part = target.with_name(target.name + ".part")
    expected = _expected_sha(card, target.parent)
    failures = []
    for url in card.weights.urls:
        try:
            _fetch(url, part, card.weights.size, progress, retries, backoff_s)
        except _MirrorFailed as err:
            failures.append(f"{url}: {err}")
            continue
        digest = sha256_file(part)
        if expected is not None and digest != expected:
            part.unlink()
            failures.append(f"{url}: sha256 mismatch (expected {expected}, got {digest}); the download was deleted")
            continue
        problem = _whole_problem(card, part, structure=expected is None)  # no hash: it must at least be whole
        if problem:
            part.unlink()
            failures.append(f"{url}: {problem}; the download was deleted")
            continue
        part.replace(target)
        if expected is None:
            _record(card, target, digest, source=url)
        return target
    hint = ("check the network and the card's weights.urls; a sha256 mismatch means a mirror serves a different "
            "file than the card describes")
    if expected is not None and not card.weights.sha256:
        hint += f" (or than the first download; if upstream replaced it on purpose, delete {target.parent / RECORD})"
    raise DownloadError(f"could not download the weights of '{card.name}': " + "; ".join(failures), hint)


def structure_problem(path: Path, fmt: str) -> str | None:
    """Why a weights file is not whole (truncated, damaged framing), or None. safetensors: 8-byte header length,
    JSON header, then exactly the bytes its tensors' offsets span. pth: a zip-format file (torch >= 1.6) must
    pass zipfile's CRC check; a legacy pickle file has no framing to check."""
    import struct
    import zipfile

    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if fmt == "safetensors":
            if len(head) < 8:
                return f"not a safetensors file ({size} bytes)"
            header_len = struct.unpack("<Q", head)[0]
            if header_len > size - 8:
                return f"truncated safetensors file: its header alone needs {header_len + 8} bytes, it has {size}"
            try:
                header = json.loads(handle.read(header_len))
                end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"),
                          default=0)
            except (ValueError, KeyError, TypeError, IndexError):
                return "not a safetensors file (unreadable header)"
            if 8 + header_len + end != size:
                return f"truncated safetensors file: {size} bytes, its header describes {8 + header_len + end}"
            return None
    if fmt == "pth" and head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except zipfile.BadZipFile as err:
            return f"truncated or damaged .pth (zip) file: {err}"
        return f"damaged .pth (zip) file: member {bad} fails its CRC" if bad else None
    return None


def _fetch(url: str, part: Path, size: int | None, progress: bool, retries: int, backoff_s: float) -> None:
    """Fill ``part`` with the bytes at ``url`` (``size`` of them, when the card knows), or raise _MirrorFailed."""
    if url.startswith("hf://"):
        _fetch_hf(url, part)
        return
    if url.startswith("file://"):
        source = Path(url2pathname(urlparse(url).path))
        if not source.is_file():
            raise _MirrorFailed("no such file")
        shutil.copyfile(source, part)
        return
    for attempt in range(retries + 1):
        try:
            with _progress_bar(part.name.removesuffix(".part"), progress) as bar:
                _http_once(url, part, size, bar)
            return
        except _Retry as err:
            if attempt == retries:
                raise _MirrorFailed(f"{err} (gave up after {retries + 1} attempts)") from err
            time.sleep(min(backoff_s * 2**attempt, MAX_BACKOFF_S))


def _http_once(url: str, part: Path, size: int | None, bar) -> None:
    """One GET, resuming ``part`` when it holds bytes. Raises _Retry (transient) or _MirrorFailed (final): a
    server announcing another length than the card's ``size`` serves another file, and no retry changes that."""
    import requests

    from zoo import __version__

    start = part.stat().st_size if part.is_file() else 0
    total = None
    # identity: a Range over gzip-encoded bytes would splice compressed and plain data.
    headers = {"User-Agent": f"distill-zoo/{__version__}", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
            status = response.status_code
            if status == 416:  # our .part is not a prefix of this file (or already too long): start over
                part.unlink()
                raise _Retry("the server refused to resume; restarting from byte 0")
            if status >= 500 or status in (408, 429):
                raise _Retry(f"HTTP {status} {response.reason}")
            if status >= 400:
                raise _MirrorFailed(f"HTTP {status} {response.reason}")
            resumed = status == 206 and start > 0
            if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
                part.unlink()
                raise _Retry("the server resumed at the wrong offset; restarting from byte 0")
            total = _total_size(response, start if resumed else 0)
            if size is not None and total is not None and total != size:
                part.unlink(missing_ok=True)
                raise _MirrorFailed(f"the server announces {total} bytes (Content-Length), the card says {size}")
            bar.reset(total, start if resumed else 0)
            with open(part, "ab" if resumed else "wb") as handle:  # 200 to a Range request: a full body
                for chunk in response.iter_content(CHUNK):
                    handle.write(chunk)
                    bar.advance(len(chunk))
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
        raise _Retry(f"connection failed: {str(err).splitlines()[0][:200]}") from err
    if total is not None and part.stat().st_size != total:
        raise _Retry(f"the transfer stopped at {part.stat().st_size} of {total} bytes")


def _total_size(response, offset: int) -> int | None:
    """The whole file's size, from Content-Range (resumed) or Content-Length; None when the server won't say."""
    whole = response.headers.get("Content-Range", "").rpartition("/")[2]
    if whole.isdigit():
        return int(whole)
    length = response.headers.get("Content-Length", "")
    return offset + int(length) if length.isdigit() else None


def _fetch_hf(url: str, part: Path) -> None:
    try:
        repo_id, path, revision = parse_hf_url(url)
    except ValueError as err:
        raise _MirrorFailed(str(err)) from err
    try:
        from huggingface_hub import hf_hub_download

        cached = hf_hub_download(repo_id, path, revision=revision)
    except Exception as err:  # missing repo/file/revision, HTTP or connection trouble: all mean "next mirror"
        raise _MirrorFailed(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
    # A copy, not a link: the HF cache may be pruned or shared, and ours is verified on every use.
    shutil.copyfile(cached, part)


def _drop_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or already gone): keep it
        pass


def _warn(message: str) -> None:
    logging.getLogger(__name__).warning(message)


class _NoBar:
    def reset(self, total: int | None, done: int) -> None:
        pass

    def advance(self, size: int) -> None:
        pass


class _RichBar(_NoBar):
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def reset(self, total: int | None, done: int) -> None:
        self.progress.update(self.task, total=total, completed=done)

    def advance(self, size: int) -> None:
        self.progress.advance(self.task, size)


@contextmanager
def _progress_bar(label: str, enabled: bool):
    if not enabled:
        yield _NoBar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    # stderr, so that stdout stays the path `zoo download` prints.
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as progress:
        yield _RichBar(progress, progress.add_task(label, total=None))
