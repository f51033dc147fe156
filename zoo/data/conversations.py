"""Readers for conversational retrieval topics: TopiOCQA, QReCC, TREC CAsT and TREC iKAT.

All of them produce one typed structure, a ``ConversationSet``: conversations
made of ``Turn``s (query id, turn id, raw utterance, the history before it,
the rewrite where the format has one) and the qrels of *its own* turns.

Field names (the DiSCo spec gives the first two; the others are the public
datasets' documented layouts, read from their official repositories):

- TopiOCQA DPR retriever files (``data/retriever/all_history/{train,dev}.json``;
  spec): a list of ``{conv_id, turn_id, question, answers, positive_ctxs:
  [{passage_id, title, text}], ...}`` where ``question`` is ``q_1 [SEP] a_1
  [SEP] ... [SEP] q_n``. The query id is the **row number** (spec: DiSCo's
  teacher runs are keyed by it); ``qid_scheme="conv_turn"`` gives
  ``<conv_id>_<turn_id>`` instead. The positive is ``positive_ctxs[0]``, as in
  DiSCo's ``parse_topiocqa.py``, unless a qrels file is given. No rewrites: attach
  them with ``with_rewrites``.
- QReCC (apple/ml-qrecc ``qrecc_{train,test}.json`` and the SCAI-QReCC files):
  a list of ``{Conversation_no, Turn_no, Question, Context, Rewrite|Truth_rewrite,
  Answer|Truth_answer, Truth_passages?}``; ``Context`` is ``[q_1, a_1, ...,
  q_{n-1}, a_{n-1}]``. Query id ``<Conversation_no>_<Turn_no>`` (or the row
  number plus ``row_offset``: DiSCo numbers QReCC rows across train then test).
  Qrels from a TREC/JSON qrels file, else binary from ``Truth_passages``.
- TREC CAsT 2019-2021 (``evaluation_topics_v1.0.json``,
  ``2020_manual_evaluation_topics_v1.0.json``): ``[{number, turn: [{number,
  raw_utterance, manual_rewritten_utterance, automatic_rewritten_utterance}]}]``,
  no system responses; CAsT 2022 flattened topics
  (``2022_evaluation_topics_flattened_duplicated_v1.0.json``): ``[{number,
  turn: [{number, utterance, manual_rewritten_utterance, response,
  provenance}]}]``, one entry per conversation path, so a turn shared by
  several paths is kept once; TREC iKAT 2023 (``2023_test_topics.json``):
  ``[{number, ptkb: {k: statement}, turns: [{turn_id, utterance,
  resolved_utterance, response}]}]``. Query id ``<number>_<turn number>``, the
  id the official qrels use (``81_1``, ``132_1-3``, ``9-1_1``).

The DiSCo spec warns that the official TopiOCQA preprocessing never resets its
qrels dict, so its dev qrels also hold train rows (whose row ids collide with
dev's). Here every reader builds a fresh qrels mapping per file and keeps only
entries whose query id is a turn of *this* set; ``dropped_qrels`` counts what a
given qrels file held for other queries.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zoo.data.trec import Qrels, read_qrels
from zoo.errors import DataError

FORMATS = ("topiocqa", "qrecc", "cast", "ikat")


@dataclass(frozen=True)
class Utterance:
    role: str  # "user" or "system"
    text: str


@dataclass(frozen=True)
class Turn:
    qid: str  # the id qrels and run files use for this turn
    turn_id: str  # the turn's number within its conversation, as the format writes it
    utterance: str  # the raw user utterance of this turn
    history: tuple[Utterance, ...] = ()  # everything said before it, oldest first
    rewrite: str | None = None  # a self-contained rewrite (human or model), when the format has one
    answer: str | None = None  # the answer to this turn (never part of its own input)


@dataclass(frozen=True)
class Conversation:
    conv_id: str
    turns: tuple[Turn, ...]
    ptkb: tuple[str, ...] = ()  # iKAT's personal text knowledge base statements


@dataclass
class ConversationSet:
    format: str
    split: str
    conversations: list[Conversation]
    qrels: Qrels  # only this set's query ids
    source: str = ""
    dropped_qrels: int = 0  # qrels entries of other query ids found in the qrels file and left out
    extra: dict[str, Any] = field(default_factory=dict)

    def turns(self) -> list[Turn]:
        return [turn for conv in self.conversations for turn in conv.turns]

    def qids(self) -> list[str]:
        return [turn.qid for turn in self.turns()]


def conversation_text(turn: Turn, sep: str = " [SEP] ", answers: bool = True, max_words: int | None = None) -> str:
    """The student's input: the current utterance, then the history newest first (DiSCo's order).

    ``q_n [SEP] a_{n-1} [SEP] q_{n-1} ... [SEP] q_1``: reversed so that truncation at the
    encoder's max length drops the oldest turns. ``answers=False`` keeps user turns only.
    ``max_words`` caps the whitespace words; whole oldest items are dropped first, and the
    current utterance alone is cut to the cap if it is longer.
    """
    items = [turn.utterance] + [u.text for u in reversed(turn.history) if answers or u.role == "user"]
    if max_words is None:
        return sep.join(items)
    kept, words = [], 0
    for i, text in enumerate(items):
        n = len(text.split())
        if words + n > max_words:
            if i == 0:
                kept.append(" ".join(text.split()[:max_words]))
            break
        kept.append(text)
        words += n
    return sep.join(kept)


def with_rewrites(cset: ConversationSet, rewrites: dict[str, str]) -> ConversationSet:
    """The set with ``rewrites[qid]`` attached to its turns (e.g. DiSCo's LLM rewrite TSVs)."""
    conversations = [replace(conv, turns=tuple(replace(t, rewrite=rewrites.get(t.qid, t.rewrite)) for t in conv.turns))
                     for conv in cset.conversations]
    return replace(cset, conversations=conversations)


def read_conversations(fmt: str, path: str | Path, split: str, qrels: str | Path | Qrels | None = None,
                       **options: Any) -> ConversationSet:
    """Dispatch on ``fmt`` (one of FORMATS); ``cast`` and ``ikat`` share one reader that detects the year."""
    if fmt == "topiocqa":
        return read_topiocqa(path, split, qrels, **options)
    if fmt == "qrecc":
        return read_qrecc(path, split, qrels, **options)
    if fmt in ("cast", "ikat"):
        return read_cast(path, split, qrels, **options)
    raise DataError(f"unknown conversation format {fmt!r}", f"use one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- helpers


def _load_list(path: Path, what: str) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{what} topics file '{path}' not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise DataError(f"{path}: expected a JSON list of objects ({what} layout)")
    return data


def _get(item: dict, keys: tuple[str, ...], path: Path, where: str, kind: type | tuple = str,
         required: bool = True) -> Any:
    """The first of ``keys`` present in ``item``, type-checked; a missing required key names the entry."""
    for key in keys:
        if key in item and item[key] is not None:
            value = item[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise DataError(f"{path}: {where}: '{key}' has type {type(value).__name__}")
            return value
    if required:
        raise DataError(f"{path}: {where}: missing '{' or '.join(keys)}'")
    return None


def _alternating(texts: Iterable[str]) -> tuple[Utterance, ...]:
    return tuple(Utterance("user" if i % 2 == 0 else "system", " ".join(t.split())) for i, t in enumerate(texts))


def _resolve_qrels(qrels: str | Path | Qrels | None) -> Qrels | None:
    if qrels is None or isinstance(qrels, dict):
        return qrels
    return read_qrels(qrels)


def _finish(fmt: str, split: str, path: Path, groups: dict[str, list[Turn]], qrels: Qrels,
            ptkb: dict[str, tuple[str, ...]] | None = None) -> ConversationSet:
    """Conversations from grouped turns; duplicate query ids are an error; qrels cut to own turns."""
    seen: set[str] = set()
    for turns in groups.values():
        for turn in turns:
            if turn.qid in seen:
                raise DataError(f"{path}: query id {turn.qid!r} appears twice")
            seen.add(turn.qid)
    own = {qid: dict(docs) for qid, docs in qrels.items() if qid in seen}
    dropped = sum(len(docs) for qid, docs in qrels.items() if qid not in seen)
    conversations = [Conversation(cid, tuple(turns), (ptkb or {}).get(cid, ())) for cid, turns in groups.items()]
    return ConversationSet(fmt, split, conversations, own, str(path), dropped)


# ---------------------------------------------------------------- TopiOCQA


def read_topiocqa(path: str | Path, split: str, qrels: str | Path | Qrels | None = None,
                  qid_scheme: str = "row") -> ConversationSet:
    """TopiOCQA's DPR retriever file (all_history); qrels from each row's ``positive_ctxs[0]``.

    A qrels file (e.g. DiSCo's ``qrel_rowid_dev.json``, which the official script fills with
    train rows too) replaces them, cut to this file's query ids.
    """
    path = Path(path)
    given = _resolve_qrels(qrels)
    if qid_scheme not in ("row", "conv_turn"):
        raise DataError(f"unknown qid_scheme {qid_scheme!r}", "use 'row' (DiSCo's ids) or 'conv_turn'")
    groups: dict[str, list[Turn]] = {}
    derived: Qrels = {}  # fresh for every file: the official script's dev leak cannot happen here
    for row, item in enumerate(_load_list(path, "TopiOCQA")):
        where = f"row {row}"
        conv_id = str(_get(item, ("conv_id",), path, where, (int, str)))
        turn_id = str(_get(item, ("turn_id",), path, where, (int, str)))
        parts = [p.strip() for p in _get(item, ("question",), path, where).split("[SEP]")]
        qid = str(row) if qid_scheme == "row" else f"{conv_id}_{turn_id}"
        answers = _get(item, ("answers",), path, where, list, required=False) or []
        turn = Turn(qid, turn_id, " ".join(parts[-1].split()), _alternating(parts[:-1]),
                    answer=str(answers[0]) if answers else None)
        groups.setdefault(conv_id, []).append(turn)
        positives = _get(item, ("positive_ctxs",), path, where, list, required=False) or []
        if positives:
            first = positives[0]
            if not isinstance(first, dict) or "passage_id" not in first:
                raise DataError(f"{path}: {where}: positive_ctxs[0] has no 'passage_id'")
            derived[qid] = {str(first["passage_id"]): 1}
    return _finish("topiocqa", split, path, groups, derived if given is None else given)


# ---------------------------------------------------------------- QReCC


def read_qrecc(path: str | Path, split: str, qrels: str | Path | Qrels | None = None,
               qid_scheme: str = "conv_turn", row_offset: int = 0) -> ConversationSet:
    """QReCC conversations (original or SCAI field names); qrels from a file, else from Truth_passages."""
    path = Path(path)
    if qid_scheme not in ("row", "conv_turn"):
        raise DataError(f"unknown qid_scheme {qid_scheme!r}", "use 'conv_turn' or 'row' (with row_offset)")
    given = _resolve_qrels(qrels)
    groups: dict[str, list[Turn]] = {}
    derived: Qrels = {}
    for row, item in enumerate(_load_list(path, "QReCC")):
        where = f"row {row}"
        conv_id = str(_get(item, ("Conversation_no",), path, where, (int, str)))
        turn_id = str(_get(item, ("Turn_no",), path, where, (int, str)))
        context = _get(item, ("Context",), path, where, list, required=False) or []
        if not all(isinstance(c, str) for c in context):
            raise DataError(f"{path}: {where}: 'Context' must be a list of strings")
        qid = f"{conv_id}_{turn_id}" if qid_scheme == "conv_turn" else str(row + row_offset)
        turn = Turn(qid, turn_id, " ".join(_get(item, ("Question",), path, where).split()), _alternating(context),
                    rewrite=_get(item, ("Rewrite", "Truth_rewrite"), path, where, required=False),
                    answer=_get(item, ("Answer", "Truth_answer"), path, where, required=False))
        groups.setdefault(conv_id, []).append(turn)
        passages = _get(item, ("Truth_passages",), path, where, list, required=False) or []
        if passages:
            derived[qid] = {str(p): 1 for p in passages}
    return _finish("qrecc", split, path, groups, derived if given is None else given)


# ---------------------------------------------------------------- TREC CAsT / iKAT


def read_cast(path: str | Path, split: str = "test", qrels: str | Path | Qrels | None = None,
              rewrite: str = "manual") -> ConversationSet:
    """CAsT 2019-2022 or iKAT 2023 topics (detected from the fields) with TREC qrels.

    ``rewrite``: which rewrite to attach where a CAsT file has both ("manual" or "automatic").
    """
    path = Path(path)
    if rewrite not in ("manual", "automatic"):
        raise DataError(f"unknown CAsT rewrite kind {rewrite!r}", "use 'manual' or 'automatic'")
    topics = _load_list(path, "TREC CAsT/iKAT")
    groups: dict[str, list[Turn]] = {}
    ptkb: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    fmt = "cast"
    paths_per_topic: dict[str, int] = {}
    for index, topic in enumerate(topics):
        number = str(_get(topic, ("number",), path, f"topic {index}", (int, str)))
        where = f"topic {number}"
        if "turns" in topic:  # iKAT 2023
            fmt = "ikat"
            raw_turns = _get(topic, ("turns",), path, where, list)
            statements = _get(topic, ("ptkb",), path, where, dict, required=False) or {}
            ptkb[number] = tuple(str(statements[k]) for k in sorted(statements, key=_natural))
        else:
            raw_turns = _get(topic, ("turn",), path, where, list)
        k = paths_per_topic[number] = paths_per_topic.get(number, 0) + 1
        conv_id = number if k == 1 else f"{number}#{k}"  # CAsT 2022 repeats a topic once per path
        history: list[Utterance] = []
        for raw in raw_turns:
            if not isinstance(raw, dict):
                raise DataError(f"{path}: {where}: a turn is not an object")
            turn_id = str(_get(raw, ("turn_id", "number"), path, where, (int, str)))
            at = f"{where} turn {turn_id}"
            utterance = " ".join(_get(raw, ("utterance", "raw_utterance"), path, at).split())
            if rewrite == "automatic":
                keys = ("automatic_rewritten_utterance", "manual_rewritten_utterance", "resolved_utterance")
            else:
                keys = ("manual_rewritten_utterance", "resolved_utterance", "automatic_rewritten_utterance")
            response = _get(raw, ("response",), path, at, required=False)
            qid = f"{number}_{turn_id}"
            turn = Turn(qid, turn_id, utterance, tuple(history), _get(raw, keys, path, at, required=False), response)
            if qid not in seen:  # a turn shared by several CAsT 2022 paths has the same history in each
                seen.add(qid)
                groups.setdefault(conv_id, []).append(turn)
            history.append(Utterance("user", utterance))
            if response:
                history.append(Utterance("system", " ".join(response.split())))
    if fmt == "ikat":
        ptkb = {cid: ptkb[cid.split("#")[0]] for cid in groups}
    return _finish(fmt, split, path, groups, _resolve_qrels(qrels) or {}, ptkb)


def _natural(key: str) -> tuple:
    return (0, int(key), "") if str(key).isdigit() else (1, 0, str(key))
