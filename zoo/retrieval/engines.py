"""One door to both retrieval engines: an index is built by the engine its encoder's representation calls for, and
searched by the engine its folder records (``zoo_index.json``'s ``kind``).

    build_index(encoder, corpus, out_dir, **options)          encoder.representation: "sparse" | "dense"
    search(index_dir, encoder, queries, k=1000, **options)    kind: "splade-impact" | "dense-flat-ip"

Engines (``zoo.retrieval.impact``, ``zoo.retrieval.dense``) are siblings with the same ``build`` / ``search``
functions; options beyond the common ones (``batch_size``, ``max_length``, ``progress``, ``total``, ``overwrite``)
are each engine's own (``BUILD_OPTIONS``, ``SEARCH_OPTIONS``), and one an engine does not have is an error, not
silently dropped.
"""

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError
from zoo.retrieval import dense, impact
from zoo.retrieval.common import Run, read_meta

ENGINES = {impact.KIND: impact, dense.KIND: dense}
INDEX_KIND = {"sparse": impact.KIND, "dense": dense.KIND}  # encoder.representation -> the index it builds


def engine(kind: str):
    if kind not in ENGINES:
        raise ConfigError(f"no retrieval engine for '{kind}' indexes", f"known: {', '.join(ENGINES)}")
    return ENGINES[kind]


def _checked(module, options: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: no such option for a {module.KIND} index",
                          f"its options: {', '.join(allowed)}")
    return options


def index_kind(encoder) -> str:
    """The kind of index ``encoder`` builds, from the representation its class declares."""
    if encoder.representation not in INDEX_KIND:
        raise ConfigError(f"no index for a '{encoder.representation}' representation",
                          f"known: {', '.join(INDEX_KIND)}")
    return INDEX_KIND[encoder.representation]


def build_index(encoder, corpus: Iterable[Any], out_dir: str | Path, *, batch_size: int = 32,
                max_length: int | None = None, progress: bool = True, total: int | None = None,
                overwrite: bool = False, **options) -> Path:
    """Encode ``corpus`` with the document ``encoder`` into the index its representation calls for at ``out_dir``."""
    module = engine(index_kind(encoder))
    return module.build(encoder, corpus, out_dir, batch_size=batch_size, max_length=max_length, progress=progress,
                        total=total, overwrite=overwrite, **_checked(module, options, module.BUILD_OPTIONS))


def search(index_dir: str | Path, encoder, queries: Mapping[str, str] | Sequence[str], k: int = 1000, *,
           batch_size: int = 32, max_length: int | None = None, **options) -> Run:
    """Encode ``queries`` with the query ``encoder`` and search the index at ``index_dir``: a TREC run dict."""
    module = engine(str(read_meta(index_dir).get("kind")))
    return module.search(index_dir, encoder, queries, k, batch_size=batch_size, max_length=max_length,
                         **_checked(module, options, module.SEARCH_OPTIONS))
