"""TREC qrels and run files, query TSVs and passage corpora: readers and writers.

Formats (what trec_eval, pyserini and the DiSCo code read):

- qrels: ``qid iter docid rel`` per line, whitespace-separated, ``rel`` an
  integer (graded; negative grades are kept, callers decide what counts as
  relevant). DiSCo also ships qrels as JSON ``{qid: {docid: rel}}``; a ``.json``
  path is read as that.
- run: ``qid Q0 docid rank score tag``; ``score`` a finite float. Teacher runs
  of DiSCo are JSON ``{qid: {docid: score}}``; a ``.json`` path is read as that.
- queries: ``qid<TAB>text`` (the DiSCo ``queries_rowid_*.tsv`` files).
- corpus: JSONL with an id under ``id``, ``_id`` or ``docid``, the text under
  ``contents`` or ``text`` and an optional ``title`` (pyserini and BEIR
  layouts), or TSV ``id<TAB>text[<TAB>title]`` (TopiOCQA's
  ``full_wiki_segments.tsv``, whose header line ``id	text	title`` is
  skipped). ``.gz`` files are read transparently.

Every malformed line raises DataError with ``path:line`` (1-based) in a
one-line message, because a 25M-line corpus that fails somewhere in the
middle must say where. Corpora are streamed (``iter_corpus``) since the real
ones do not fit in memory as Python objects; ``load_corpus`` is for small ones.
"""

import gzip
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zoo.errors import DataError

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]

ID_KEYS = ("id", "_id", "docid")
TEXT_KEYS = ("contents", "text")
TSV_HEADER = ("id", "text", "title")


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    title: str = ""


def passage_text(doc: Doc, sep: str = ". ") -> str:
    """The passage as encoders see it: ``title + sep + text`` (the DiSCo TopiOCQA loader's rule), or the text."""
    return f"{doc.title}{sep}{doc.text}" if doc.title else doc.text


def _open_text(path: Path, mode: str = "rt") -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")


def _is_json(path: Path) -> bool:
    return path.name.endswith((".json", ".json.gz"))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline); blank lines are skipped; bad UTF-8 names its line.

    Lines are decoded one by one (not by a buffered text reader) so that the number is exact.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{number}: not valid UTF-8 ({err.reason})") from err
                if line.strip():
                    yield number, line
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err


def _bad(path: Path, number: int, what: str, line: str) -> DataError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return DataError(f"{path}:{number}: {what}: {shown!r}")


# ---------------------------------------------------------------- qrels


def read_qrels(path: str | Path) -> Qrels:
    """``{qid: {docid: rel}}`` from a TREC qrels file (or DiSCo's JSON qrels when the name ends in .json)."""
    path = Path(path)
    if _is_json(path):
        return {qid: {doc: int(rel) for doc, rel in docs.items()}
                for qid, docs in _read_json_mapping(path, "qrels", integer=True).items()}
    qrels: Qrels = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 4:
            raise _bad(path, number, f"expected 4 fields 'qid iter docid rel', got {len(fields)}", line)
        qid, _, docid, rel = fields
        try:
            grade = int(rel)
        except ValueError:
            raise _bad(path, number, f"relevance {rel!r} is not an integer", line) from None
        docs = qrels.setdefault(qid, {})
        if docid in docs:
            raise _bad(path, number, f"duplicate judgement for query {qid!r} and document {docid!r}", line)
        docs[docid] = grade
    return qrels


def write_qrels(qrels: Qrels, path: str | Path) -> None:
    """TREC qrels in the mapping's own order (callers sort when they want a canonical file)."""
    with _open_text(Path(path), "wt") as out:
        for qid, docs in qrels.items():
            for docid, rel in docs.items():
                out.write(f"{qid} 0 {docid} {int(rel)}\n")


# ---------------------------------------------------------------- runs


def read_run(path: str | Path) -> Run:
    """``{qid: {docid: score}}`` from a TREC run (or a DiSCo JSON run when the name ends in .json).

    Ranks are checked to be integers but not kept: order is by score, as trec_eval does.
    """
    path = Path(path)
    if _is_json(path):
        return _read_json_mapping(path, "run", integer=False)
    run: Run = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise _bad(path, number, f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}", line)
        qid, _, docid, rank, score, _ = fields
        try:
            int(rank)
        except ValueError:
            raise _bad(path, number, f"rank {rank!r} is not an integer", line) from None
        value = _finite(score)
        if value is None:
            raise _bad(path, number, f"score {score!r} is not a finite number", line)
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise _bad(path, number, f"document {docid!r} listed twice for query {qid!r}", line)
        docs[docid] = value
    return run


def ranked(docs: dict[str, float]) -> list[tuple[str, float]]:
    """A query's documents by descending score, ties broken by document id (deterministic)."""
    return sorted(docs.items(), key=lambda item: (-item[1], item[0]))


def write_run(run: Run, path: str | Path, tag: str = "zoo", depth: int | None = None) -> Path:
    """TREC run ``qid Q0 docid rank score tag``: per query (in mapping order) the documents ranked by score, ranks
    from 1; returns ``path``."""
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be one non-empty word, got {tag!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_text(path, "wt") as out:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(ranked(docs)[:depth], start=1):
                out.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    return path


REDUCERS = {"mean": lambda scores: sum(scores) / len(scores), "sum": sum, "max": max}
FUSION_RULES = tuple(REDUCERS)  # how several teachers' scores of one (query, doc) become one
MISSING_RULES = ("skip", "floor")


def fuse_runs(runs: list[Run], rule: str = "mean", missing: str = "floor") -> Run:
    """Several teachers' runs as one (DiSCo multi-teacher; the paper's rule is unconfirmed, ``mean`` is the default).

    Per (query, doc) the rule is applied over the teachers. ``missing`` says what a teacher that ranked the query
    but did not list the doc contributes:
    - ``floor`` (default): the lowest score it listed for that query. A run cut at depth k scores an unlisted doc
      at most its k-th score, so this is a bound, not a guess, and it keeps a doc that only one teacher liked
      from outranking one that every teacher listed;
    - ``skip``: nothing; the doc gets the other teachers' scores only (the spec's reading). When the teachers'
      score scales differ, the larger-scale teacher's stragglers then outrank docs both teachers listed: on
      ``disco_mini`` a SPLADE and a dense teacher fused by ``skip`` taught worse than either alone.
    A teacher with no list for the query contributes nothing under either rule.
    """
    if rule not in FUSION_RULES:
        raise DataError(f"unknown run fusion {rule!r}", f"use one of {', '.join(FUSION_RULES)}")
    if missing not in MISSING_RULES:
        raise DataError(f"unknown rule for a doc a teacher did not list: {missing!r}",
                        f"use one of {', '.join(MISSING_RULES)}")
    if len(runs) == 1:
        return runs[0]
    fused: Run = {}
    for qid in dict.fromkeys(qid for run in runs for qid in run):
        lists = [run[qid] for run in runs if run.get(qid)]
        docids = dict.fromkeys(docid for docs in lists for docid in docs)
        floors = [min(docs.values()) if missing == "floor" else None for docs in lists]
        fused[qid] = {}
        for docid in docids:
            scores = [docs.get(docid, floor) for docs, floor in zip(lists, floors, strict=True)]
            fused[qid][docid] = float(REDUCERS[rule]([s for s in scores if s is not None]))
    return fused


# ---------------------------------------------------------------- JSON qrels / runs


def _finite(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and not isinstance(text, bool) else None


def _read_json_mapping(path: Path, what: str, integer: bool) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with _open_text(path) as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON {what} {{qid: {{docid: value}}}}, got {type(data).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for qid, docs in data.items():
        if not isinstance(docs, dict):
            raise DataError(f"{path}: query {qid!r}: expected {{docid: value}}, got {type(docs).__name__}")
        checked = {}
        for docid, value in docs.items():
            number = _finite(value)
            if number is None or (integer and number != int(number)):
                kind = "an integer relevance" if integer else "a finite score"
                raise DataError(f"{path}: query {qid!r} document {docid!r}: {value!r} is not {kind}")
            checked[str(docid)] = int(number) if integer else number
        out[str(qid)] = checked
    return out


# ---------------------------------------------------------------- queries


def read_queries(path: str | Path) -> dict[str, str]:
    """``{qid: text}`` from a ``qid<TAB>text`` file (DiSCo's query and rewrite files)."""
    path = Path(path)
    queries: dict[str, str] = {}
    for number, line in _lines(path):
        qid, tab, text = line.partition("\t")
        if not tab:
            raise _bad(path, number, "expected 'qid<TAB>text'", line)
        if not qid.strip():
            raise _bad(path, number, "empty query id", line)
        if qid in queries:
            raise _bad(path, number, f"duplicate query id {qid!r}", line)
        queries[qid] = text
    return queries


def write_queries(queries: dict[str, str], path: str | Path) -> None:
    with _open_text(Path(path), "wt") as out:
        for qid, text in queries.items():
            out.write(f"{qid}\t{' '.join(text.split())}\n")


# ---------------------------------------------------------------- corpora


def _corpus_kind(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind in (".jsonl", ".json"):
        return "jsonl"
    if kind in (".tsv", ".txt"):
        return "tsv"
    raise DataError(f"{path}: unknown corpus format", "name the file *.jsonl or *.tsv (optionally .gz)")


def iter_corpus(path: str | Path) -> Iterator[Doc]:
    """Stream the documents of a JSONL or TSV corpus, one line at a time, in file order."""
    path = Path(path)
    parse = _jsonl_doc if _corpus_kind(path) == "jsonl" else _tsv_doc
    for number, line in _lines(path):
        doc = parse(path, number, line)
        if doc is not None:
            yield doc


def _jsonl_doc(path: Path, number: int, line: str) -> Doc:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise _bad(path, number, f"not valid JSON ({err.msg})", line) from None
    if not isinstance(row, dict):
        raise _bad(path, number, "expected a JSON object", line)
    key = next((k for k in ID_KEYS if k in row), None)
    if key is None:
        raise _bad(path, number, f"no document id (one of {', '.join(ID_KEYS)})", line)
    docid = row[key]
    if not isinstance(docid, (str, int)) or isinstance(docid, bool) or not str(docid).strip():
        raise _bad(path, number, "empty or non-scalar document id", line)
    text_key = next((k for k in TEXT_KEYS if k in row), None)
    if text_key is None or not isinstance(row[text_key], str):
        raise _bad(path, number, f"no document text (a string under {' or '.join(TEXT_KEYS)})", line)
    title = row.get("title") or ""
    if not isinstance(title, str):
        raise _bad(path, number, "title is not a string", line)
    return Doc(str(docid), row[text_key], title)


def _tsv_doc(path: Path, number: int, line: str) -> Doc | None:
    fields = line.split("\t")
    if number == 1 and tuple(f.strip().lower() for f in fields) in (TSV_HEADER, TSV_HEADER[:2]):
        return None  # TopiOCQA's header line
    if len(fields) not in (2, 3):
        raise _bad(path, number, f"expected 'id<TAB>text[<TAB>title]', got {len(fields)} fields", line)
    if not fields[0].strip():
        raise _bad(path, number, "empty document id", line)
    return Doc(fields[0], fields[1], fields[2] if len(fields) == 3 else "")


def load_corpus(path: str | Path, ids: Iterable[str] | None = None) -> dict[str, Doc]:
    """``{docid: Doc}``; with ``ids``, only those documents are kept (one streaming pass over a big corpus).

    A document id seen twice is an error (checked for the kept documents).
    """
    path = Path(path)
    wanted = None if ids is None else set(ids)
    docs: dict[str, Doc] = {}
    for doc in iter_corpus(path):
        if wanted is not None and doc.id not in wanted:
            continue
        if doc.id in docs:
            raise DataError(f"{path}: document id {doc.id!r} appears twice")
        docs[doc.id] = doc
    return docs


def write_corpus_jsonl(docs: Iterable[Doc], path: str | Path) -> None:
    """pyserini's JSONL layout: ``{"id", "contents", "title"}`` (title only when there is one)."""
    with _open_text(Path(path), "wt") as out:
        for doc in docs:
            row = {"id": doc.id, "contents": doc.text}
            if doc.title:
                row["title"] = doc.title
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def write_corpus_tsv(docs: Iterable[Doc], path: str | Path, header: bool = True) -> None:
    """TopiOCQA's TSV layout ``id<TAB>text<TAB>title``; tabs and newlines inside fields become spaces."""
    with _open_text(Path(path), "wt") as out:
        if header:
            out.write("\t".join(TSV_HEADER) + "\n")
        for doc in docs:
            out.write("\t".join((doc.id, " ".join(doc.text.split()), " ".join(doc.title.split()))) + "\n")
