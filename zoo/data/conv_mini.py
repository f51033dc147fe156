"""conv_mini: a small conversational retrieval set built offline from CPython's own docstrings.

No real conversational retrieval set installs offline, so this one is generated,
deterministically, from real text written by others: the docstrings of a fixed
list of standard-library modules (``MODULES``) of the running CPython.

Documents. One per module (its module docstring; id ``py:<module>``, title
``<module> module``) and one per public function or class with a docstring of its
own of at least 5 words (id ``py:<module>.<name>``, title ``<module>.<name>``).
Public means listed in ``__all__``, else a name without underscore whose object is
defined in the module (or its C accelerator ``_<module>``); aliases are dropped.
Texts are whitespace-normalised and cut to ``max_doc_words`` words.

Why it is conversational. Many modules share function names (``open`` in gzip,
bz2, lzma, io, codecs, dbm, shelve, tarfile, webbrowser; ``dumps``/``loads`` in
json, pickle, marshal, plistlib; ``compress`` in gzip, bz2, lzma, zlib; 20 names
in math and cmath, ...), so "what does its open function do?" cannot be answered
without the earlier turn that named the module.

Conversations (seeded by ``build_seed``). Turn 1 introduces a module (explicit),
drawn with weight 1 + the number of its functions whose name another module shares.
Each later turn is one of (weights in ``TURN_WEIGHTS``; a kind that does not apply
at that point becomes ``pronoun``):

- ``pronoun``: "what does its {name} function do?" about an unused function of the
  current module; names the previous topic also has are preferred (p=0.7), then
  names any other module has (p=0.8);
- ``ellipsis``: "and {name}?" right after another function turn;
- ``description``: "which of its functions can I use to {desc}?" where ``desc`` is the
  function's first docstring sentence (imperative verb first, module name removed,
  first word lower-cased, final period dropped);
- ``switch``: "now tell me about the {module} module" (explicit; moves the topic,
  preferably (p=0.8) to a module sharing a function name with the current one);
- ``backref``: "and {name} in the previous module?" about the name just discussed,
  in the module before the last switch (needs two levels of context);
- ``explicit``: "what does {module}.{name} do?" (self-contained, so that "always
  use the first turn" is not a winning pattern).

Every turn has a rewrite that names the module (the teacher's input). The manifest's
``stats`` measure, on the written files, how many later turns need their context: the
share of context-dependent kinds, of turns naming neither the module nor a function
name unique to it (``later_name_ambiguous``), and of turns whose utterance alone does
not put the relevant document strictly first under BM25 (``later_ambiguous_without_context``),
with BM25 success@1 and MRR@10 for utterance, rewrite and whole conversation. Relevance:
the document the turn asks about has grade 2; any other document whose text is
byte-identical to it (e.g. ``random.choice`` and ``secrets.choice``) grade 1. The
answer recorded for a turn (and shown in later history) is the first sentence of
the grade-2 document.

On disk (the real formats, read back with the real readers): ``corpus.jsonl``
(pyserini JSONL), ``{train,dev,test}.json`` (QReCC layout: Conversation_no, Turn_no,
Question, Context, Rewrite, Answer, plus our ``Turn_type``), ``qrels_{split}.txt``
(TREC qrels), ``MANIFEST.json`` (version, params, Python version, modules, sha256 per
file, ambiguity statistics). Conversations are split into train/dev/test by a seeded
permutation of conversation numbers, so no conversation is in two splits.

Built on first use under ``<zoo_home>/data/conv_mini/<key>`` (the key names the
format version, the Python version (docstrings change between releases) and a hash of
the parameters) in a temp
folder renamed into place; a folder whose manifest is missing or whose files do not
match it is reported as partial or corrupt. The ``disco_mini`` data module
(zoo/data/conv_retrieval.py) reads it; this file needs neither torch nor Lightning.
"""

import hashlib
import importlib
import inspect
import json
import platform
import random
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import build_once
from zoo.data.conversations import conversation_text, read_qrecc
from zoo.data.trec import Doc, iter_corpus, passage_text, read_qrels, write_corpus_jsonl, write_qrels
from zoo.digests import sha256_file
from zoo.errors import DataError
from zoo.paths import zoo_home

VERSION = 1
MODULES = ("base64", "binascii", "bisect", "bz2", "cmath", "codecs", "copy", "csv", "dbm", "fnmatch", "glob",
           "gzip", "hashlib", "heapq", "hmac", "html", "io", "json", "lzma", "marshal", "math", "pickle", "plistlib",
           "random", "re", "secrets", "shelve", "shlex", "shutil", "socket", "sqlite3", "statistics", "string",
           "struct", "tarfile", "tempfile", "textwrap", "time", "wave", "webbrowser", "zipfile", "zlib")
SPLIT_FILES = {"train": "train", "val": "dev", "test": "test"}
TURN_WEIGHTS = {"pronoun": 0.30, "ellipsis": 0.17, "description": 0.15, "switch": 0.13, "backref": 0.10,
                "explicit": 0.15}
CONTEXT_FREE = ("intro", "switch", "explicit")
VERBS = {"return", "open", "compress", "decompress", "convert", "create", "read", "write", "encode", "decode",
         "compute", "calculate", "get", "set", "make", "serialize", "deserialize", "load", "dump", "copy", "move",
         "remove", "delete", "find", "search", "split", "join", "test", "check", "wait", "send", "receive", "close",
         "escape", "unescape", "format", "parse", "pack", "unpack", "insert", "locate", "shuffle", "choose",
         "generate", "translate", "fill", "wrap", "dedent", "indent", "shorten", "quote", "connect", "resolve",
         "sleep", "register", "unregister", "lookup", "match", "scan", "build", "construct", "push", "pop", "merge",
         "count", "compare", "update", "apply", "display", "launch", "change", "recursively", "rename", "hash"}

# (utterance, rewrite) templates; {noun} is "function" or "class"
INTRO = [("tell me about the {module} module", "tell me about the python {module} module"),
         ("what is the python {module} module for?", "what is the python {module} module for?"),
         ("I'd like to learn about the {module} library in python.", "what is the python {module} library for?")]
SWITCH = [("now tell me about the {module} module", "tell me about the python {module} module"),
          ("let's move on to {module}. what is that module for?", "what is the python {module} module for?"),
          ("what about the {module} module?", "what is the python {module} module for?")]
PRONOUN = [("what does its {name} {noun} do?", "what does the {name} {noun} of the {module} module do?"),
           ("how do I use {name} from it?", "how do I use {name} from the python {module} module?"),
           ("can you explain the {name} {noun} in there?", "can you explain the {name} {noun} in the {module} module?"),
           ("what is {name} for in that module?", "what is {module}.{name} for?")]
ELLIPSIS = [("what about {name}?", "what about the {name} {noun} of the {module} module?"),
            ("and {name}?", "what does {name} in the {module} module do?"),
            ("and the {name} {noun}?", "and the {name} {noun} of the {module} module?")]
DESCRIPTION = [("which of its functions can I use to {desc}?",
                "which function of the {module} module can I use to {desc}?"),
               ("is there something in it to {desc}?", "is there something in the {module} module to {desc}?")]
BACKREF = [("and {name} in the previous module?", "what does {name} in the {module} module do?"),
           ("does the module before have {name} too?", "does the {module} module have {name} too?"),
           ("and the same in the other module?", "what does {name} in the {module} module do?")]
EXPLICIT = [("what does {module}.{name} do?", "what does {module}.{name} do?"),
            ("explain the {name} {noun} of the {module} module", "explain the {name} {noun} of the {module} module")]


@dataclass(frozen=True)
class MiniParams:
    conversations: int = 600
    min_turns: int = 3
    max_turns: int = 7
    build_seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_doc_words: int = 150
    passage_words: int = 0  # > 0: each docstring cut into passages of about this many words (sibling passages)

    def key(self) -> str:
        params = asdict(self)
        if not self.passage_words:
            params.pop("passage_words")  # whole documents: the key (and folder) of sets built before the switch
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        return f"v{VERSION}-py{platform.python_version()}-{digest}"


@dataclass(frozen=True)
class Entry:
    module: str
    name: str  # "" for the module document
    noun: str  # "module", "function" or "class"
    doc: Doc
    first: str  # first sentence of the docstring

    @property
    def id(self) -> str:
        return self.doc.id


# ---------------------------------------------------------------- documents


SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")  # "pack_into(format, buffer, offset, v1, ...)"
SIGNATURE_PREFIX = re.compile(r"^[\w.]+\([^)]*\)\s+-+\s+")  # "new(name, data=b'') - Return a new ..."


def _prose(text: str) -> str:
    """The docstring without a leading call signature (old-style C docstrings start with one)."""
    lines = inspect.cleandoc(text).split("\n")
    if len(lines) > 1 and SIGNATURE_LINE.match(lines[0]):
        lines = lines[1:]
    return SIGNATURE_PREFIX.sub("", "\n".join(lines).strip())


def _clean(text: str, max_words: int) -> str:
    return " ".join(_prose(text).split()[:max_words])


def _first_sentence(text: str) -> str:
    paragraph = " ".join(_prose(text).split("\n\n")[0].split())
    return re.split(r"(?<=[.!?])\s+", paragraph)[0]


def _public(module: Any) -> list[tuple[str, Any]]:
    """(name, object) for the module's public functions and classes, aliases left out."""
    listed = getattr(module, "__all__", None)
    own = {module.__name__, "_" + module.__name__}
    names = sorted(listed) if listed is not None else sorted(n for n in dir(module) if not n.startswith("_"))
    found = []
    for name in names:
        obj = getattr(module, name, None)
        if not (inspect.isroutine(obj) or inspect.isclass(obj)):
            continue
        if listed is None and getattr(obj, "__module__", None) not in own:
            continue
        real = getattr(obj, "__name__", name)
        if real != name and getattr(module, real, None) is obj:
            continue  # an alias of a name kept under its own name
        found.append((name, obj))
    return found


def collect(max_doc_words: int) -> tuple[list[Entry], dict[str, str]]:
    """Documents of every module in MODULES that imports here; skipped modules with the reason."""
    entries, skipped = [], {}
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            skipped[name] = f"import failed: {err}"
            continue
        if not module.__doc__ or len(module.__doc__.split()) < 5:
            skipped[name] = "no module docstring"
            continue
        entries.append(Entry(name, "", "module", Doc(f"py:{name}", _clean(module.__doc__, max_doc_words),
                                                     f"{name} module"), _first_sentence(module.__doc__)))
        for attr, obj in _public(module):
            doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
            if not doc or len(_prose(doc).split()) < 5:
                continue
            noun = "class" if inspect.isclass(obj) else "function"
            entries.append(Entry(name, attr, noun, Doc(f"py:{name}.{attr}", _clean(doc, max_doc_words),
                                                       f"{name}.{attr}"), _first_sentence(doc)))
    return entries, skipped


def description(entry: Entry) -> str | None:
    """The first sentence as an infinitive phrase ("return the arc cosine of x"), or None if it is not one."""
    words = re.sub(rf"\b{re.escape(entry.module)}\b[-_]?", "", entry.first, flags=re.IGNORECASE).split()
    if not 3 <= len(words) <= 20 or entry.noun != "function":
        return None
    verb = words[0].lower()
    if verb not in VERBS and verb.endswith("s") and verb[:-1] in VERBS:
        verb = verb[:-1]
    if verb not in VERBS:
        return None
    return " ".join([verb] + words[1:]).rstrip(".:;,")


# ---------------------------------------------------------------- conversations


@dataclass
class Spec:
    """One generated turn before it is written out."""

    kind: str
    utterance: str
    rewrite: str
    target: Entry


def _fill(template: tuple[str, str], entry: Entry, **extra: str) -> tuple[str, str]:
    values = {"module": entry.module, "name": entry.name, "noun": entry.noun, **extra}
    return template[0].format(**values), template[1].format(**values)


def generate(entries: list[Entry], params: MiniParams) -> list[list[Spec]]:
    rng = random.Random(params.build_seed)
    modules = sorted({e.module for e in entries})
    intro = {e.module: e for e in entries if not e.name}
    functions = {m: [e for e in entries if e.module == m and e.name] for m in modules}
    homes: dict[str, set[str]] = {}
    for e in entries:
        if e.name:
            homes.setdefault(e.name, set()).add(e.module)
    topics = [m for m in modules if len(functions[m]) >= 3]
    # a topic is drawn with weight 1 + (its functions whose name another module shares): more ambiguity
    topic_weights = [1 + sum(len(homes[e.name]) > 1 for e in functions[m]) for m in topics]
    kinds, weights = list(TURN_WEIGHTS), list(TURN_WEIGHTS.values())

    def pick(module: str, used: set[str], previous: str | None, need=lambda e: True) -> Entry | None:
        """A function of ``module``: shared names preferred, names the previous topic also has first of all."""
        pool = [e for e in functions[module] if e.id not in used and need(e)]
        also_before = [e for e in pool if previous in homes[e.name]]
        shared = [e for e in pool if len(homes[e.name]) > 1]
        if also_before and rng.random() < 0.7:
            pool = also_before
        elif shared and rng.random() < 0.8:
            pool = shared
        return rng.choice(pool) if pool else None

    conversations = []
    for _ in range(params.conversations):
        current, previous = rng.choices(topics, topic_weights)[0], None
        utterance, rewrite = _fill(rng.choice(INTRO), intro[current])
        turns = [Spec("intro", utterance, utterance if "python" in utterance else rewrite, intro[current])]
        used, last = {intro[current].id}, None  # last: the previous turn's function entry, if any
        n_turns = rng.randint(params.min_turns, params.max_turns)
        while len(turns) < n_turns:
            kind = rng.choices(kinds, weights)[0]
            spec = None
            if kind == "ellipsis" and last is not None and last.module == current:
                target = pick(current, used, previous, lambda e, noun=last.noun: e.noun == noun)
                spec = target and Spec(kind, *_fill(rng.choice(ELLIPSIS), target), target)
            elif kind == "description":
                target = pick(current, used, previous, lambda e: description(e) is not None)
                spec = target and Spec(kind, *_fill(rng.choice(DESCRIPTION), target, desc=description(target)),
                                       target)
            elif kind == "switch":
                sharing = [m for m in topics if m != current and any(current in homes[e.name] for e in functions[m])]
                new = rng.choice(sharing if sharing and rng.random() < 0.8 else [m for m in topics if m != current])
                if intro[new].id not in used:
                    spec = Spec(kind, *_fill(rng.choice(SWITCH), intro[new]), intro[new])
                    previous, current = current, new
            elif kind == "backref" and previous is not None and last is not None and last.module == current:
                target = next((e for e in functions[previous] if e.name == last.name and e.id not in used), None)
                spec = target and Spec(kind, *_fill(rng.choice(BACKREF), target), target)
            elif kind == "explicit":
                target = pick(current, used, previous)
                spec = target and Spec(kind, *_fill(rng.choice(EXPLICIT), target), target)
            if spec is None:  # the drawn kind does not apply here: ask about a function by pronoun
                target = pick(current, used, previous)
                if target is None:
                    break
                spec = Spec("pronoun", *_fill(rng.choice(PRONOUN), target), target)
            turns.append(spec)
            used.add(spec.target.id)
            last = spec.target if spec.target.name else None
        conversations.append(turns)
    return conversations


# ---------------------------------------------------------------- writing


def _answer(entry: Entry) -> str:
    return " ".join(entry.first.split()[:40])


def _split_of(params: MiniParams) -> dict[int, str]:
    numbers = list(range(1, params.conversations + 1))
    random.Random(params.split_seed).shuffle(numbers)
    n_val = round(params.conversations * params.val_fraction)
    n_test = round(params.conversations * params.test_fraction)
    return {n: "dev" if i < n_val else "test" if i < n_val + n_test else "train" for i, n in enumerate(numbers)}


def passages(doc: Doc, words: int) -> list[Doc]:
    """``doc`` cut into ceil(n / words) consecutive passages of near-equal length (ids ``<id>#1``, ``<id>#2``, ...),
    all under the document's title, as a long article is cut into the passages of a retrieval corpus."""
    tokens = doc.text.split()
    count = max(1, -(-len(tokens) // words))
    bounds = [round(k * len(tokens) / count) for k in range(count + 1)]
    return [Doc(f"{doc.id}#{k + 1}", " ".join(tokens[bounds[k]:bounds[k + 1]]), doc.title) for k in range(count)]


def judgements(target: Entry, duplicates: list[str], pieces: dict[str, list[Doc]]) -> dict[str, int]:
    """A turn's qrels: the document it asks about grade 2, byte-identical documents grade 1. Cut into passages:
    the target's first passage (it holds the recorded answer) grade 2, its sibling passages and every passage of
    a duplicate grade 1 (they describe the same function; the one judged passage of a TopiOCQA turn leaves such
    passages of its article unjudged)."""
    others = sorted(doc for doc in duplicates if doc != target.id)
    if not pieces:
        return {target.id: 2, **{doc: 1 for doc in others}}
    first, *siblings = pieces[target.id]
    grades = {first.id: 2, **{p.id: 1 for p in siblings}}
    grades.update({p.id: 1 for doc in others for p in pieces[doc]})
    return grades


def write_set(folder: Path, params: MiniParams) -> dict[str, Any]:
    """Generate and write every file except MANIFEST.json; returns the manifest's content."""
    entries, skipped = collect(params.max_doc_words)
    by_text: dict[str, list[str]] = {}
    for e in entries:
        by_text.setdefault(e.doc.text, []).append(e.id)
    pieces = {e.id: passages(e.doc, params.passage_words) for e in entries} if params.passage_words else {}
    conversations = generate(entries, params)
    split_of = _split_of(params)
    topics: dict[str, list[dict]] = {name: [] for name in SPLIT_FILES.values()}
    qrels: dict[str, dict[str, dict[str, int]]] = {name: {} for name in SPLIT_FILES.values()}
    for number, turns in enumerate(conversations, start=1):
        split, context = split_of[number], []
        for turn_no, spec in enumerate(turns, start=1):
            answer = _answer(spec.target)
            topics[split].append({"Conversation_no": number, "Turn_no": turn_no, "Question": spec.utterance,
                                  "Rewrite": spec.rewrite, "Answer": answer, "Context": list(context),
                                  "Conversation_source": "conv_mini", "Turn_type": spec.kind})
            qrels[split][f"{number}_{turn_no}"] = judgements(spec.target, by_text[spec.target.doc.text], pieces)
            context += [spec.utterance, answer]
    documents = [p for e in entries for p in pieces[e.id]] if pieces else [e.doc for e in entries]
    write_corpus_jsonl(documents, folder / "corpus.jsonl")
    for name in SPLIT_FILES.values():
        (folder / f"{name}.json").write_text(json.dumps(topics[name], indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        write_qrels(qrels[name], folder / f"qrels_{name}.txt")
    return {"name": "conv_mini", "version": VERSION, "params": asdict(params),
            "source": "docstrings of CPython standard-library modules (see zoo/data/conv_mini.py)",
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": sys.platform, "modules": sorted({e.module for e in entries}), "skipped_modules": skipped}


def build(folder: Path, params: MiniParams) -> None:
    """Write the set into ``folder`` (a new, empty folder) with its manifest last."""
    folder.mkdir(parents=True)
    manifest = write_set(folder, params)
    files = sorted(p.name for p in folder.iterdir())
    manifest["files"] = {name: sha256_file(folder / name) for name in files}
    manifest["fingerprint"] = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    manifest["stats"] = measure(folder)
    (folder / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def verify(folder: Path) -> dict[str, Any]:
    """The manifest of a complete, unmodified set; DataError naming the folder otherwise."""
    hint = f"delete '{folder}' and it is rebuilt on next use"
    path = folder / "MANIFEST.json"
    if not path.is_file():
        raise DataError(f"conv_mini folder '{folder}' is partial: no MANIFEST.json", hint)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"conv_mini folder '{folder}' has a corrupt MANIFEST.json ({err})", hint) from err
    if manifest.get("version") != VERSION:
        raise DataError(f"conv_mini folder '{folder}' has format version {manifest.get('version')}, "
                        f"this zoo writes {VERSION}", hint)
    present = sorted(p.name for p in folder.iterdir() if p.name != "MANIFEST.json")
    if present != sorted(files):
        raise DataError(f"conv_mini folder '{folder}' is partial or has extra files: "
                        f"expected {sorted(files)}, found {present}", hint)
    for name, digest in files.items():
        if sha256_file(folder / name) != digest:
            raise DataError(f"conv_mini file '{folder / name}' does not match its sha256 in MANIFEST.json", hint)
    return manifest


def ensure(params: MiniParams, root: Path | None = None) -> Path:
    """The verified folder of the set for ``params``, built first if absent (temp folder + atomic rename)."""
    parent = Path(root).expanduser() if root else zoo_home() / "data" / "conv_mini"
    folder = parent / params.key()
    build_once(folder, lambda temp: build(temp, params))
    verify(folder)
    return folder


# ---------------------------------------------------------------- ambiguity statistics


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def bm25_ranks(docs: list[str], queries: list[str], golds: list[set[int]], k1: float = 0.9,
               b: float = 0.4) -> np.ndarray:
    """Pessimistic rank (1 + documents scoring >= the best gold, other golds excluded) of each query's gold.

    Plain BM25 (pyserini's default k1, b), used only to measure how much a query says on its own.
    """
    from scipy.sparse import csr_matrix

    vocab: dict[str, int] = {}
    rows, cols, tfs = [], [], []
    lengths = []
    for i, text in enumerate(docs):
        counts: dict[int, int] = {}
        tokens = _tokens(text)
        for token in tokens:
            j = vocab.setdefault(token, len(vocab))
            counts[j] = counts.get(j, 0) + 1
        lengths.append(len(tokens))
        rows += [i] * len(counts)
        cols += list(counts)
        tfs += list(counts.values())
    tf = np.array(tfs, dtype=np.float64)
    length = np.array(lengths, dtype=np.float64)
    df = np.bincount(cols, minlength=len(vocab))
    idf = np.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
    norm = k1 * (1 - b + b * length[rows] / length.mean())
    weights = idf[cols] * tf * (k1 + 1) / (tf + norm)
    matrix = csr_matrix((weights, (rows, cols)), shape=(len(docs), len(vocab)))
    q_rows, q_cols, q_vals = [], [], []
    for i, text in enumerate(queries):
        for token in _tokens(text):
            if token in vocab:
                q_rows.append(i)
                q_cols.append(vocab[token])
                q_vals.append(1.0)
    scores = (csr_matrix((q_vals, (q_rows, q_cols)), shape=(len(queries), len(vocab))) @ matrix.T).toarray()
    ranks = np.empty(len(queries), dtype=np.int64)
    for i, gold in enumerate(golds):
        idx = sorted(gold)
        best = scores[i, idx].max()
        ranks[i] = 1 + int((scores[i] >= best).sum()) - int((scores[i, idx] >= best).sum())
    return ranks


def measure(folder: Path) -> dict[str, Any]:
    """How much later turns need their context, measured on the written files through the real readers."""
    docs = list(iter_corpus(folder / "corpus.jsonl"))
    index = {doc.id: i for i, doc in enumerate(docs)}
    variants: dict[str, list[str]] = {"utterance": [], "rewrite": [], "conversation": []}
    golds, kinds, sizes, name_ambiguous = [], [], {}, []
    homes: dict[str, set[str]] = {}
    for doc in docs:  # titles are "<module>.<name>" or "<module> module"
        module, dot, name = doc.title.partition(".")
        if dot:
            homes.setdefault(name, set()).add(module)
    for name in SPLIT_FILES.values():
        cset = read_qrecc(folder / f"{name}.json", name, read_qrels(folder / f"qrels_{name}.txt"))
        raw = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        sizes[name] = {"conversations": len(cset.conversations), "turns": len(raw)}
        for turn, item in zip(cset.turns(), raw, strict=True):
            if item["Turn_no"] == 1:
                continue
            variants["utterance"].append(turn.utterance)
            variants["rewrite"].append(turn.rewrite)
            variants["conversation"].append(conversation_text(turn))
            gold = [d for d, rel in cset.qrels[turn.qid].items() if rel == 2]
            golds.append({index[d] for d in gold})
            kinds.append(item["Turn_type"])
            module, dot, name = docs[index[gold[0]]].title.partition(".")
            words = set(_tokens(turn.utterance))
            named_uniquely = name.lower() in words and len(homes.get(name, ())) == 1
            name_ambiguous.append(bool(dot) and module not in words and not named_uniquely
                                  and item["Turn_type"] != "description")
    texts = [passage_text(doc) for doc in docs]
    ranks = {key: bm25_ranks(texts, queries, golds) for key, queries in variants.items()}
    kinds_arr = np.array(kinds)
    dependent = ~np.isin(kinds_arr, CONTEXT_FREE)
    return {
        "documents": len(docs), "splits": sizes, "later_turns": len(kinds),
        "later_turn_types": {k: int((kinds_arr == k).sum()) for k in sorted(set(kinds))},
        "later_context_dependent": round(float(dependent.mean()), 4),
        "later_name_ambiguous": round(float(np.mean(name_ambiguous)), 4),
        "later_ambiguous_without_context": round(float((ranks["utterance"] > 1).mean()), 4),
        "context_dependent_ambiguous": round(float((ranks["utterance"][dependent] > 1).mean()), 4),
        "bm25_success_at_1": {k: round(float((r == 1).mean()), 4) for k, r in ranks.items()},
        "bm25_mrr_at_10": {k: round(float(np.where(r <= 10, 1.0 / r, 0.0).mean()), 4) for k, r in ranks.items()},
    }


def params_from(cfg: Any) -> MiniParams:
    return MiniParams(int(cfg.conversations), int(cfg.min_turns), int(cfg.max_turns), int(cfg.build_seed),
                      int(cfg.split_seed), float(cfg.val_fraction), float(cfg.test_fraction), int(cfg.max_doc_words),
                      int(cfg.get("passage_words", 0)))
