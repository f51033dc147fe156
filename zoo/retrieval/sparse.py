"""Quantised SPLADE term weights and a brute-force scorer on torch sparse tensors.

Lucene impact indexes store integer weights, so document AND query weights are quantised the same way:

    w_int = round(w · quant_scale)        (quant_scale 100 by default; terms rounding to 0 are dropped)
    score_int(q, d) = Σ_t q_int[t] · d_int[t]          (what Lucene's impact scoring returns)
    score(q, d) ≈ score_int / quant_scale²            (the float SPLADE dot product, up to quantisation)

``SparseIndex`` holds the same integer document weights as a CSR matrix [N, |terms|] and scores queries exactly
(float64 accumulation, exact for integers below 2^53): the reference the Lucene index is checked against, and a
baseline to benchmark it with on collections that fit in memory.
"""

import json
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import torch

from zoo.errors import DataError
from zoo.retrieval.common import Run

TermWeights = dict[str, int]


def quantise(reps: torch.Tensor, quant_scale: float) -> torch.Tensor:
    """Float weights -> int32 round(w · quant_scale)."""
    return torch.round(reps.detach().float() * float(quant_scale)).to(torch.int32)


def to_term_weights(row: torch.Tensor, terms: Sequence[str]) -> TermWeights:
    """One quantised [|V|] row -> {term: weight} over its non-zero entries."""
    row = row.cpu()
    ids = torch.nonzero(row > 0).flatten().tolist()
    values = row[ids].tolist()
    return {terms[i]: int(v) for i, v in zip(ids, values, strict=True)}


@torch.no_grad()
def encode_term_weights(encoder, texts: Sequence[str], quant_scale: float, max_length: int | None = None,
                        batch_size: int = 32) -> list[TermWeights]:
    """Texts -> quantised {term: int weight} dicts with a SPLADE encoder (eval mode, batched)."""
    terms = _terms(encoder)
    was_training = encoder.training
    encoder.eval()
    out: list[TermWeights] = []
    try:
        for i in range(0, len(texts), batch_size):
            reps = quantise(encoder.encode(list(texts[i:i + batch_size]), max_length), quant_scale)
            out.extend(to_term_weights(row, terms) for row in reps)
    finally:
        encoder.train(was_training)
    return out


def _terms(encoder) -> list[str]:
    cached = getattr(encoder, "_zoo_terms", None)
    if cached is None:
        cached = encoder.terms()
        encoder._zoo_terms = cached  # plain attribute: the vocabulary never changes for an encoder
    return cached


def read_vectors(paths: Iterable[Path]) -> Iterator[tuple[str, TermWeights]]:
    """(docid, {term: weight}) from JsonVectorCollection files (``{"id", "contents", "vector"}`` per line)."""
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                    yield str(doc["id"]), {str(t): int(w) for t, w in doc["vector"].items()}
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise DataError(f"{path}:{number}: not a JsonVectorCollection line ({err})") from err


class SparseIndex:
    """Brute-force exact search over integer term weights: scores = D · q as a torch sparse CSR product."""

    def __init__(self, docs: Iterable[tuple[str, Mapping[str, int]]]):
        self.docids: list[str] = []
        self.vocab: dict[str, int] = {}
        crow, cols, vals = [0], [], []
        for docid, weights in docs:
            self.docids.append(docid)
            row = sorted((self.vocab.setdefault(term, len(self.vocab)), float(w)) for term, w in weights.items())
            cols.extend(col for col, _ in row)  # CSR wants sorted, distinct columns per row
            vals.extend(value for _, value in row)
            crow.append(len(cols))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self.matrix = torch.sparse_csr_tensor(torch.tensor(crow, dtype=torch.int64),
                                                  torch.tensor(cols, dtype=torch.int64),
                                                  torch.tensor(vals, dtype=torch.float64),
                                                  size=(len(self.docids), max(1, len(self.vocab))),
                                                  check_invariants=True)

    @classmethod
    def from_vectors_dir(cls, vectors_dir: Path) -> "SparseIndex":
        files = sorted(Path(vectors_dir).glob("*.jsonl"))
        if not files:
            raise DataError(f"no *.jsonl vector files in '{vectors_dir}'")
        return cls(read_vectors(files))

    def __len__(self) -> int:
        return len(self.docids)

    def score(self, query_weights: Sequence[Mapping[str, int]]) -> torch.Tensor:
        """[N docs, Q queries] exact integer scores (float64)."""
        dense = torch.zeros(self.matrix.shape[1], len(query_weights), dtype=torch.float64)
        for j, weights in enumerate(query_weights):
            for term, weight in weights.items():
                if term in self.vocab:
                    dense[self.vocab[term], j] = float(weight)
        return self.matrix @ dense

    def search(self, queries: Mapping[str, Mapping[str, int]], k: int = 1000, scale: float = 1.0) -> Run:
        """{qid: {term: int}} -> {qid: {docid: score / scale}} for the top k docs with a positive score."""
        qids = list(queries)
        if not qids or not self.docids:
            return {qid: {} for qid in qids}
        scores = self.score([queries[q] for q in qids])
        top = torch.topk(scores, min(k, len(self.docids)), dim=0)
        run: Run = {}
        for j, qid in enumerate(qids):
            pairs = zip(top.values[:, j].tolist(), top.indices[:, j].tolist(), strict=True)
            run[qid] = {self.docids[i]: value / scale for value, i in pairs if value > 0}
        return run
