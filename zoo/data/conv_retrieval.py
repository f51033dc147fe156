"""Conversational retrieval training examples for DiSCo-style distillation (strings, not tensors).

One example per turn that has a positive (a qrels document with rel >= min_rel):

- ``conversation``: the student's input, ``conversation_text`` (current utterance, then
  the history newest first, joined by `` [SEP] ``, capped at ``max_words``);
- ``utterance`` and ``rewrite`` (the teacher's input; None where the format has none);
- ``positive``: one positive drawn uniformly (DiSCo ``L2I_Dataset``);
- ``negatives``: ``negatives.count`` documents. With teacher runs: drawn uniformly
  without replacement from the teacher's ranks ``window[0]..window[1]-1`` (0-based,
  DiSCo keeps 10..959: the top 10 are dropped as likely false negatives) minus the
  positives, with replacement when fewer remain. Without a run: uniform random corpus
  documents (no BM25 involved) other than the positives;
- ``teacher_scores``: ``[t+, t_1..t_n]`` from the (fused) run, where ``t+`` is the
  positive's score if it lies inside the window, else the window's maximum (the spec's
  rule, which keeps the positive near the top of the KL target); None without a run.

Teacher runs are files (``teacher_runs``: TREC or DiSCo JSON), or the entry ``teacher``:
the task's first teacher searching the corpus with the train rewrites, made once the
teachers are ready (``attach_teachers``; cached under ZOO_HOME, see
``zoo.data.teacher_runs``), as DiSCo's teachers score offline.

Tokenization is the method's job. Texts of documents are ``title + ". " + text``.

Sampling is a pure function of (run seed, epoch, example index): the training sampler
is a DistributedSampler that yields ``(epoch, index)`` pairs, so negatives change every
epoch yet are the same after a resume, in any worker, on any rank. Validation and test
examples are sampled with epoch 0 (fixed). Teacher runs are used for the train split
only; their query ids must be the train split's (for TopiOCQA: row numbers).

Registered as ``conv_retrieval`` (paths from the config) and ``disco_mini`` (the
generated set of zoo/data/conv_mini.py, written in the same real formats).

Its kind is ``retrieval`` (``zoo.kinds.retrieval``: full-corpus search, scored by MRR@10 and the rest). There are no
classes and no fixed input shape (``num_classes`` None, ``input_shape`` ()).
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from zoo.data import conv_mini
from zoo.data.base import ZooDataModule
from zoo.data.conversations import ConversationSet, Turn, conversation_text, read_conversations, with_rewrites
from zoo.data.trec import (
    FUSION_RULES,
    MISSING_RULES,
    Doc,
    Qrels,
    Run,
    fuse_runs,
    iter_corpus,
    passage_text,
    ranked,
    read_queries,
    read_run,
)
from zoo.errors import ConfigError, DataError
from zoo.registry import DATASETS

JUDGEMENT_RULES = ("all", "top")  # train_judgements: every qrels entry, or each turn's highest grade only

SPLITS = ("train", "val", "test")
TEACHER_RUN = "teacher"  # a data.teacher_runs entry: mine the run from the task's first teacher
TEXT_KEYS = ("qid", "conversation", "utterance", "rewrite", "positive", "positive_id", "negatives", "negative_ids")


@dataclass
class SplitSource:
    topics: Path
    qrels: Path | None = None
    rewrites: Path | None = None


@dataclass
class Sources:
    """Where one conversational retrieval set lives on disk, in its real formats."""

    format: str
    corpus: Path
    splits: dict[str, SplitSource]  # train, val, test (test may repeat val)
    options: dict[str, Any] = field(default_factory=dict)  # reader options (qid_scheme, row_offset, rewrite)
    fingerprint: str = ""


class EpochSampler(DistributedSampler):
    """A DistributedSampler that yields ``(epoch, index)``, so the dataset can seed by epoch."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in super().__iter__())


class ConvExamples(Dataset):
    """One split's examples; documents are held as indices into shared id/text tables."""

    def __init__(self, cset: ConversationSet, doc_index: dict[str, int], texts: list[str], doc_ids: list[str],
                 pool: np.ndarray, run: Run | None, cfg: Any, seed: int):
        self.texts, self.doc_ids, self.pool = texts, doc_ids, pool
        self.count = int(cfg.negatives.count)
        start, stop = (int(v) for v in cfg.negatives.window)
        positive_score = cfg.negatives.get("positive_score", "window")  # checked by ConvRetrievalDataModule
        self.seed = seed
        self.rows: list[dict[str, Any]] = []
        self.skipped = {"no_positive": 0, "no_run": 0}
        for turn in cset.turns():
            positives = sorted(doc for doc, rel in cset.qrels.get(turn.qid, {}).items()
                               if rel >= int(cfg.min_rel) and doc in doc_index)
            if not positives:
                self.skipped["no_positive"] += 1
                continue
            positive_set = set(positives)
            row = {"turn": turn, "positives": np.array([doc_index[d] for d in positives], dtype=np.int64),
                   "conversation": conversation_text(turn, cfg.sep, bool(cfg.answers), cfg.max_words)}
            if run is not None:
                window = [(doc, score) for doc, score in ranked(run.get(turn.qid, {}))[start:stop]
                          if doc in doc_index]
                keep = [(doc, score) for doc, score in window if doc not in positive_set]
                if not keep:
                    self.skipped["no_run"] += 1
                    continue
                # t+ is the positive's own score when the teacher ranked it inside the window, else the window max
                window_max = max(score for _, score in window)
                in_window = dict(window)
                positive_scores = [in_window.get(d, window_max) for d in positives]
                if positive_score == "top":  # never below a candidate, even where the teacher ranked it lower
                    positive_scores = [max(score, window_max) for score in positive_scores]
                row["positive_scores"] = np.array(positive_scores, dtype=np.float32)
                row["candidates"] = np.array([doc_index[d] for d, _ in keep], dtype=np.int64)
                row["candidate_scores"] = np.array([s for _, s in keep], dtype=np.float32)
            self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = key if isinstance(key, tuple) else (0, int(key))
        row = self.rows[i]
        rng = np.random.default_rng([self.seed, epoch, i])
        pick = int(rng.integers(len(row["positives"])))
        positive = int(row["positives"][pick])
        scores = None
        if "candidates" in row:
            n = len(row["candidates"])
            picks = rng.choice(n, self.count, replace=n < self.count)
            negatives = row["candidates"][picks]
            scores = [float(row["positive_scores"][pick])] + [float(s) for s in row["candidate_scores"][picks]]
        else:
            negatives = self._random_negatives(rng, row["positives"])
        turn: Turn = row["turn"]
        return {"index": i, "qid": turn.qid, "conversation": row["conversation"], "utterance": turn.utterance,
                "rewrite": turn.rewrite, "positive": self.texts[positive], "positive_id": self.doc_ids[positive],
                "negatives": [self.texts[j] for j in negatives], "negative_ids": [self.doc_ids[j] for j in negatives],
                "teacher_scores": scores}

    def _random_negatives(self, rng: np.random.Generator, positives: np.ndarray) -> np.ndarray:
        allowed = self.pool[~np.isin(self.pool, positives)]
        if len(allowed) == 0:
            raise DataError("no document left to sample negatives from (every pooled document is a positive)")
        return allowed[rng.choice(len(allowed), self.count, replace=len(allowed) < self.count)]


def files_fingerprint(paths: list[Path], extra: list[Any]) -> str:
    """A cheap identity of big input files: name, size and the sha256 of their first MiB (not the whole file)."""
    digest = hashlib.sha256(repr(extra).encode())
    for path in paths:
        digest.update(f"{path.name}:{path.stat().st_size}:".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def collate_examples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Dict batch: lists of strings (lists of lists for negatives), ``index`` and ``teacher_scores`` tensors."""
    batch: dict[str, Any] = {key: [item[key] for item in items] for key in TEXT_KEYS}
    # The method's keys (zoo.methods.disco): candidates positive first, and the teacher's text as ``rewrites``.
    # Made here, the one place where examples become batches; turns without a rewrite fall back to the utterance.
    batch["docs"] = [[item["positive"], *item["negatives"]] for item in items]
    batch["rewrites"] = [item["rewrite"] if item["rewrite"] is not None else item["utterance"] for item in items]
    batch["index"] = torch.tensor([item["index"] for item in items], dtype=torch.long)
    scores = [item["teacher_scores"] for item in items]
    batch["teacher_scores"] = None if any(s is None for s in scores) else torch.tensor(scores, dtype=torch.float32)
    return batch


@DATASETS.register("conv_retrieval")
class ConvRetrievalDataModule(ZooDataModule):
    """Conversational retrieval in its real on-disk formats (TopiOCQA, QReCC, CAsT/iKAT), as string batches."""

    name = "conv_retrieval"
    kind = "retrieval"
    num_classes = None
    input_shape = ()
    transform_fingerprint = None  # random negatives per epoch

    def __init__(self, cfg: Any, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed)
        self.check_settings(cfg)
        self.collate_fn = collate_examples
        self.sources = self.locate(cfg)
        self.sets = self._read_sets(self.sources)
        self.unjudged = self._sparse_train_judgements(str(cfg.get("train_judgements", "all")))
        self.run_files = [Path(str(p)).expanduser() for p in cfg.teacher_runs if str(p) != TEACHER_RUN]
        self.file_runs = [read_run(path) for path in self.run_files]
        self.teacher_run_file: Path | None = None  # set by attach_teachers when teacher_runs names "teacher"
        self._run = self._fused(self.file_runs)  # the train candidates' run (attach_teachers adds the teacher's)
        self.fingerprint = self.sources.fingerprint or files_fingerprint(
            [self.sources.corpus, *self.run_files,
             *[p for src in self.sources.splits.values() for p in (src.topics, src.qrels, src.rewrites) if p]],
            [self.sources.format, self.sources.options])

    @property
    def splits(self) -> dict[str, ConvExamples]:
        """Every split's examples, built on first use from the runs known then. Reading the corpus is the costly
        part (TopiOCQA: 25.7M passages), and a ``teacher`` run only exists after ``attach_teachers``: building
        late reads the corpus once, not once without the teacher's candidates and again with them."""
        if self._splits is None:
            self._build(self._run)
        return self._splits

    @splits.setter
    def splits(self, value: dict | None) -> None:
        self._splits = value or None  # the base class's {} means: not built yet

    @staticmethod
    def check_settings(cfg: Any) -> None:
        """The switches' values, when the data module is made rather than when the splits are first built."""
        checks = {"negatives.positive_score": (cfg.negatives.get("positive_score", "window"), ("window", "top")),
                  "train_judgements": (cfg.get("train_judgements", "all"), JUDGEMENT_RULES),
                  "teacher_fusion": (cfg.teacher_fusion, FUSION_RULES),
                  "teacher_missing": (cfg.get("teacher_missing", "floor"), MISSING_RULES)}
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ConfigError(f"data.{key} must be one of {', '.join(allowed)}, got {value!r}")

    def _sparse_train_judgements(self, rule: str) -> dict[str, set[str]]:
        """``top``: each train turn keeps only its highest-graded documents (TopiOCQA's one judged passage per turn);
        the other relevant ones become unjudged, so they can be drawn as negatives. Returns them by query id, for
        the premise measurement (``split_info``); val and test keep every judgement."""
        if rule == "all":
            return {}
        train = self.sets["train"]
        kept, unjudged = {}, {}
        for qid, docs in train.qrels.items():
            relevant = {doc: rel for doc, rel in docs.items() if rel >= int(self.cfg.min_rel)}
            best = max(relevant.values(), default=None)
            kept[qid] = {doc: rel for doc, rel in docs.items() if rel < int(self.cfg.min_rel) or rel == best}
            hidden = {doc for doc, rel in relevant.items() if rel != best}
            if hidden:
                unjudged[qid] = hidden
        self.sets["train"] = replace(train, qrels=kept)
        return unjudged

    def unjudged_relevant(self) -> dict[str, Any]:
        """The regime ``train_judgements: top`` builds, measured: how many train turns have a relevant document
        left unjudged, and how often the training candidates (the teacher's rank window less the judged
        positives) hold one, i.e. how often the CE label can push a relevant document down as a negative."""
        rows = self.splits["train"].rows
        hidden_in_pool = []
        for row in rows:
            if "candidates" in row:
                hidden = self.unjudged.get(row["turn"].qid, set())
                pool = [self.doc_ids[j] for j in row["candidates"]]
                hidden_in_pool.append(sum(doc in hidden for doc in pool) / len(pool))
        with_run = len(hidden_in_pool)
        return {"train_turns": len(rows), "turns_with_unjudged_relevant": len(self.unjudged),
                "unjudged_relevant_documents": sum(len(docs) for docs in self.unjudged.values()),
                "candidate_pools": with_run,
                "pools_holding_unjudged_relevant": sum(share > 0 for share in hidden_in_pool),
                "mean_unjudged_share_of_pool": round(sum(hidden_in_pool) / with_run, 5) if with_run else None}

    def _fused(self, runs: list[Run]) -> Run | None:
        """The teacher runs as one (``teacher_fusion``, ``teacher_missing``), its query ids checked; None if none."""
        if not runs:
            return None
        run = fuse_runs(runs, str(self.cfg.teacher_fusion), str(self.cfg.get("teacher_missing", "floor")))
        train_qids = set(self.sets["train"].qids())
        foreign = [qid for qid in run if qid not in train_qids]
        if len(foreign) == len(run):
            raise DataError(f"no query id of the teacher run(s) is a train query id (e.g. {foreign[0]!r})",
                            "teacher runs must be keyed by the train split's query ids")
        return run

    def _build(self, run: Run | None) -> None:
        """Documents held and every split's examples; the fused run gives the train split its candidates."""
        cfg = self.cfg
        wanted = set()
        for cset in self.sets.values():
            for docs in cset.qrels.values():
                wanted.update(docs)
        if run is not None:
            start, stop = (int(v) for v in cfg.negatives.window)
            train_qids = set(self.sets["train"].qids())
            for qid in train_qids:
                wanted.update(doc for doc, _ in ranked(run.get(qid, {}))[start:stop])
        docs, pool_ids = self._read_corpus(self.sources.corpus, wanted, int(cfg.negatives.random_pool),
                                           self.shuffle_seed)
        self.doc_ids = sorted(docs)
        doc_index = {doc: i for i, doc in enumerate(self.doc_ids)}
        self.texts = [passage_text(docs[d], str(cfg.title_sep)) for d in self.doc_ids]
        pool = np.array(sorted(doc_index[d] for d in pool_ids), dtype=np.int64)
        self._splits = {split: ConvExamples(cset, doc_index, self.texts, self.doc_ids, pool,
                                            run if split == "train" else None, cfg, self.shuffle_seed)
                        for split, cset in self.sets.items()}

    def attach_teachers(self, teachers: list, say=print) -> None:
        """``teacher_runs`` naming ``teacher``: the first teacher's run on the train rewrites (DiSCo's offline
        teacher scoring, spec step 1), computed once per teacher and data set and stored under ZOO_HOME, is fused
        with the run files and gives the training candidates and their teacher scores."""
        if not any(str(p) == TEACHER_RUN for p in self.cfg.teacher_runs):
            return
        if not teachers:
            raise DataError(f"data.teacher_runs names '{TEACHER_RUN}' but this method has no teacher",
                            "drop it from data.teacher_runs, or give run files")
        from zoo.data.teacher_runs import teacher_train_run

        self.teacher_run_file = teacher_train_run(self, teachers[0], say)
        self._run = self._fused([*self.file_runs, read_run(self.teacher_run_file)])
        self._splits = None  # built again on next use, with the teacher's candidates and scores

    # -- where the files are: subclasses (the mini set) override this

    def locate(self, cfg: Any) -> Sources:
        def path(value: Any, key: str) -> Path:
            if value is None:
                raise DataError(f"data.{key} is not set", f"set data.{key}=<path> on the command line")
            return Path(str(value)).expanduser()

        def split(key: str) -> SplitSource:
            node = cfg[key]
            return SplitSource(path(node.topics, f"{key}.topics"),
                               None if node.qrels is None else path(node.qrels, f"{key}.qrels"),
                               None if node.rewrites is None else path(node.rewrites, f"{key}.rewrites"))

        splits = {"train": split("train"), "val": split("val")}
        splits["test"] = splits["val"] if cfg.test.topics is None else split("test")
        options = {k: cfg.options[k] for k in cfg.options}
        return Sources(str(cfg.format), path(cfg.corpus, "corpus"), splits, options)

    def _read_sets(self, sources: Sources) -> dict[str, ConversationSet]:
        sets = {}
        for split, src in sources.splits.items():
            cset = read_conversations(sources.format, src.topics, split, src.qrels, **sources.options)
            sets[split] = with_rewrites(cset, read_queries(src.rewrites)) if src.rewrites else cset
        return sets

    @staticmethod
    def _read_corpus(path: Path, wanted: set[str], pool_size: int, seed: int) -> tuple[dict[str, Doc], list[str]]:
        """One streaming pass: the wanted documents plus a seeded reservoir sample for random negatives."""
        rng = np.random.default_rng([seed, 7])
        docs: dict[str, Doc] = {}
        pool: list[Doc] = []
        # reservoir sampling, Li's "Algorithm L": random draws only at the lines that enter the pool
        weight, next_entry = 1.0, pool_size - 1

        def draw() -> float:
            return 1.0 - float(rng.random())  # in (0, 1]

        for n, doc in enumerate(iter_corpus(path)):
            if doc.id in wanted:
                if doc.id in docs:
                    raise DataError(f"{path}: document id {doc.id!r} appears twice")
                docs[doc.id] = doc
            if n < pool_size:
                pool.append(doc)
            elif n == next_entry:
                pool[int(rng.integers(pool_size))] = doc
            if n == next_entry and pool_size > 0:
                weight *= np.exp(np.log(draw()) / pool_size)
                gap = np.log(draw()) / np.log1p(-weight) if weight < 1.0 else 0.0
                next_entry = n + 1 + int(np.floor(gap))
        missing = wanted - set(docs)
        if missing and len(missing) == len(wanted):
            raise DataError(f"{path}: none of the {len(wanted)} judged or teacher-ranked documents is in the corpus",
                            "check that data.corpus is the collection the qrels and runs refer to")
        for doc in pool:
            docs.setdefault(doc.id, doc)
        return docs, [doc.id for doc in pool]

    # -- what evaluation needs

    def collection(self) -> Iterator[tuple[str, str]]:
        """``(doc id, passage text)`` for every document of the collection file (not only those held for
        training), as an index encodes them."""
        sep = str(self.cfg.get("title_sep", ". "))
        return ((doc.id, passage_text(doc, sep)) for doc in iter_corpus(self.sources.corpus))

    def queries(self, split: str, kind: str = "conversation") -> dict[str, str]:
        """``{qid: text}`` for every turn of a split: ``conversation``, ``utterance`` or ``rewrite``."""
        cfg, turns = self.cfg, self.sets[split].turns()
        if kind == "conversation":
            return {t.qid: conversation_text(t, cfg.sep, bool(cfg.answers), cfg.max_words) for t in turns}
        if kind == "utterance":
            return {t.qid: t.utterance for t in turns}
        if kind == "rewrite":
            return {t.qid: t.rewrite for t in turns if t.rewrite is not None}
        raise ValueError(f"unknown query kind {kind!r}: conversation, utterance or rewrite")

    def qrels(self, split: str) -> Qrels:
        return self.sets[split].qrels

    def split_info(self) -> dict[str, Any]:
        info = super().split_info()
        info["skipped"] = {split: dict(ds.skipped) for split, ds in self.splits.items()}
        info["dropped_qrels"] = {split: cset.dropped_qrels for split, cset in self.sets.items()}
        if self.unjudged:
            info["unjudged_relevant"] = self.unjudged_relevant()
        info["teacher_runs"] = [str(p) for p in self.run_files]
        if self.teacher_run_file is not None:
            info["teacher_runs"].append(str(self.teacher_run_file))
        return info

    def _loader(self, split: str, train: bool) -> DataLoader:
        if not train:
            return super()._loader(split, train)
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(self.splits[split], num_replicas=world, rank=rank, shuffle=True,
                               seed=self.shuffle_seed, drop_last=False)
        return DataLoader(self.splits[split], batch_size=int(self.cfg.batch_size), sampler=sampler,
                          num_workers=int(self.cfg.num_workers), collate_fn=self.collate_fn,
                          persistent_workers=int(self.cfg.num_workers) > 0, drop_last=bool(self.cfg.drop_last))


@DATASETS.register("disco_mini")
class DiscoMiniDataModule(ConvRetrievalDataModule):
    """conv_mini (built on first use) through the same readers and sampler as the real sets.

    It is written as QReCC-layout topics, TREC qrels and a JSONL corpus, so only ``locate`` differs.
    """

    name = "disco_mini"

    def locate(self, cfg: Any) -> Sources:
        folder = conv_mini.ensure(conv_mini.params_from(cfg), cfg.root)
        self.manifest = conv_mini.verify(folder)
        splits = {split: SplitSource(folder / f"{name}.json", folder / f"qrels_{name}.txt")
                  for split, name in conv_mini.SPLIT_FILES.items()}
        return Sources("qrecc", folder / "corpus.jsonl", splits, {"qid_scheme": "conv_turn"},
                       self.manifest["fingerprint"][:16])
