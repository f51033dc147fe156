"""A SPLADE query encoder -> a checked ONNX folder whose graph ends in the sparse head.

    export_splade(encoder, "exports/disco-query", texts=[...])      # encoder: zoo.archs.splade.SpladeEncoder
    OnnxSpladeEncoder("exports/disco-query").term_weights(["what about its economy?"], quant_scale=100)

The graph maps (input_ids [B, n] int64, attention_mask [B, n] int64) -> weights [B, |V|] float32 and contains
the whole representation, MLM logits -> log(1 + ReLU) -> mask -> max over tokens, so a deployment needs only
the tokenizer and onnxruntime (no torch). Batch and sequence axes are dynamic.

Folder (written into a hidden temp folder, renamed into place only after every check passed, as ``zoo export``):
``model.onnx``, ``tokenizer/`` (``save_pretrained``), ``splade.json`` (IO names, vocabulary size, max length) and
``export.json`` (graph facts, parity numbers, versions).

Checks (each failure raises ExportCheckError): ``onnx.checker`` (full), opset, IO names; then on ``texts``
(``DEFAULT_TEXTS`` if none) tokenized in batches of ``batch_size``, plus one single-text batch, onnxruntime vs
PyTorch (fp32, eval): (1) max |weight difference| <= ``max_abs_diff``; (2) every text's top-``top_k`` terms agree:
a term may differ only where it sits within ``max_abs_diff`` of the k-th weight (a near-tie at the cut);
(3) the non-zero pattern agrees up to weights within ``max_abs_diff`` of 0.
The graph steps, the staged folder writer and the deploy base are shared with the dense exporter
(``zoo.export.text_encoders``).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from zoo.export.errors import ExportCheckError
from zoo.export.text_encoders import DEFAULT_TEXTS, INPUTS, export_text_encoder, paired_outputs
from zoo.export.text_runtime import OnnxTextEncoder

OUTPUT = "weights"
SCHEMA = 1


def _topk_mismatch(ref: np.ndarray, got: np.ndarray, k: int, tol: float) -> int:
    """Texts whose top-k term sets differ by more than near-ties at the k-th weight."""
    bad = 0
    for r, g in zip(ref, got, strict=True):
        k_ = min(k, int((r > 0).sum()) or 1)
        top_r, top_g = set(np.argsort(-r, kind="stable")[:k_]), set(np.argsort(-g, kind="stable")[:k_])
        kth = np.sort(r)[::-1][k_ - 1]
        if any(abs(r[v] - kth) > tol for v in top_r ^ top_g):
            bad += 1
    return bad


def check_parity(encoder: nn.Module, onnx_path: Path, texts: Sequence[str], max_abs_diff: float = 1e-4,
                 top_k: int = 20, batch_size: int = 4, threads: int | None = None) -> dict[str, Any]:
    """onnxruntime vs PyTorch term weights on ``texts`` (see the module docstring); returns the measured numbers."""
    from zoo.export.runtime import make_session

    session = make_session(Path(onnx_path), threads=threads)
    max_diff, topk_bad, pattern_bad, nonfinite, rows = 0.0, 0, 0, 0, 0
    for ref, got in paired_outputs(encoder, session, texts, OUTPUT, batch_size):
        nonfinite += int((~np.isfinite(got)).sum())
        max_diff = max(max_diff, float(np.abs(np.nan_to_num(got) - ref).max()))
        topk_bad += _topk_mismatch(ref, got, top_k, max_abs_diff)
        flipped = (ref > 0) != (got > 0)
        pattern_bad += int((flipped & (np.maximum(np.abs(ref), np.abs(got)) > max_abs_diff)).sum())
        rows += len(ref)
    report = {"texts": rows, "max_abs_diff": max_diff, "max_abs_diff_tolerance": max_abs_diff, "top_k": top_k,
              "topk_mismatches": topk_bad, "nonzero_mismatches": pattern_bad, "nonfinite": nonfinite,
              "providers": session.get_providers()}
    if nonfinite or not max_diff <= max_abs_diff:
        raise ExportCheckError(f"ONNX term weights differ from PyTorch's: max |diff| {max_diff:.3e} > "
                               f"{max_abs_diff:.0e}" + (f", {nonfinite} non-finite" if nonfinite else ""))
    if topk_bad or pattern_bad:
        raise ExportCheckError(f"ONNX and PyTorch disagree on the top-{top_k} terms of {topk_bad} text(s) / on "
                               f"{pattern_bad} non-zero term(s)")
    return report


def export_splade(encoder: nn.Module, out: str | Path, texts: Sequence[str] | None = None, *, opset: int = 18,
                  exporter: str = "dynamo", max_abs_diff: float = 1e-4, top_k: int = 20,
                  source: dict[str, Any] | None = None) -> Path:
    """Export a SPLADE query encoder to the folder ``out`` (see the module docstring); returns ``out``."""
    spec = {"schema": SCHEMA, "inputs": list(INPUTS), "output": OUTPUT, "vocab_size": int(encoder.vocab_size),
            "max_length": int(encoder.max_length), "representation": "max_j mask_j * log1p(relu(mlm_logits))",
            "encoder": getattr(encoder, "name", type(encoder).__name__)}
    return export_text_encoder(
        encoder, out, kind="splade", output=OUTPUT, spec=spec, opset=opset, exporter=exporter, source=source,
        check=lambda path: check_parity(encoder, path, list(texts or DEFAULT_TEXTS), max_abs_diff, top_k))


class OnnxSpladeEncoder(OnnxTextEncoder):
    """SPLADE query encoding from an exported folder: ``encode`` gives [len(texts), |V|] term weights."""

    kind, output = "splade", OUTPUT

    def __init__(self, folder: str | Path, providers: list[str] | None = None, threads: int | None = None):
        super().__init__(folder, providers, threads)
        self.terms = self.tokenizer.convert_ids_to_tokens(list(range(int(self.spec["vocab_size"]))))

    def term_weights(self, texts: Sequence[str], quant_scale: float | None = None) -> list[dict[str, float]]:
        """{term: weight} per text over the non-zero terms; with ``quant_scale`` the int round(w · scale) > 0."""
        out = []
        for row in self.encode(texts):
            if quant_scale is not None:
                q = np.rint(row * quant_scale).astype(np.int64)
                out.append({self.terms[i]: int(q[i]) for i in np.flatnonzero(q > 0)})
            else:
                out.append({self.terms[i]: float(row[i]) for i in np.flatnonzero(row > 0)})
        return out
