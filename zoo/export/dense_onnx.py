"""A dense sentence encoder (``zoo.archs.dense``, e.g. a dense_ce student) -> a checked ONNX folder.

    export_dense(encoder, "exports/dense-query", texts=[...])        # encoder: zoo.archs.dense.DenseEncoder
    OnnxDenseEncoder("exports/dense-query").encode(["what about its economy?"])   # [1, dim], unit length

The graph maps (input_ids [B, n] int64, attention_mask [B, n] int64) -> sentence_embedding [B, dim] float32 and
holds the whole pipeline, transformer -> mean over the unmasked tokens -> L2 normalisation, so that inner products
of its outputs are the cosine similarities the faiss index was built with; batch and sequence axes are dynamic.
The graph steps (export, ``onnx.checker``, opset and IO names) are shared with the SPLADE exporter
(``zoo.export.text_encoders``).

Folder (staged in a hidden temp folder and renamed into place only after every check passed): ``model.onnx``,
``tokenizer/``, ``dense.json`` (IO names, dimension, max length, pooling) and ``export.json`` (graph facts,
parity numbers, versions).

Parity (ExportCheckError on failure): on ``texts`` in batches of ``batch_size`` plus one single-text batch,
onnxruntime vs PyTorch (fp32, eval): max |embedding difference| <= ``max_abs_diff``, no non-finite value. The
smallest cosine between the two embeddings of a text is reported too.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from zoo.export.errors import ExportCheckError
from zoo.export.text_encoders import DEFAULT_TEXTS, INPUTS, export_text_encoder, paired_outputs
from zoo.export.text_runtime import OnnxTextEncoder

OUTPUT = "sentence_embedding"  # not "embedding": torch's exporter already names the BERT embedding lookup so
SCHEMA = 1


def check_parity(encoder: nn.Module, onnx_path: Path, texts: Sequence[str], max_abs_diff: float = 1e-4,
                 batch_size: int = 4, threads: int | None = None) -> dict[str, Any]:
    """onnxruntime vs PyTorch embeddings on ``texts`` (see the module docstring); returns the measured numbers."""
    from zoo.export.runtime import make_session

    session = make_session(Path(onnx_path), threads=threads)
    max_diff, min_cosine, nonfinite, rows = 0.0, 1.0, 0, 0
    for ref, got in paired_outputs(encoder, session, texts, OUTPUT, batch_size):
        nonfinite += int((~np.isfinite(got)).sum())
        got = np.nan_to_num(got)
        max_diff = max(max_diff, float(np.abs(got - ref).max()))
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
        min_cosine = min(min_cosine, float(((got * ref).sum(axis=1) / np.maximum(norms, 1e-12)).min()))
        rows += len(ref)
    report = {"texts": rows, "max_abs_diff": max_diff, "max_abs_diff_tolerance": max_abs_diff,
              "min_cosine": min_cosine, "nonfinite": nonfinite, "providers": session.get_providers()}
    if nonfinite or not max_diff <= max_abs_diff:
        raise ExportCheckError(f"ONNX embeddings differ from PyTorch's: max |diff| {max_diff:.3e} > "
                               f"{max_abs_diff:.0e}" + (f", {nonfinite} non-finite" if nonfinite else ""))
    return report


def export_dense(encoder: nn.Module, out: str | Path, texts: Sequence[str] | None = None, *, opset: int = 18,
                 exporter: str = "dynamo", max_abs_diff: float = 1e-4, source: dict[str, Any] | None = None) -> Path:
    """Export a dense query encoder to the folder ``out`` (see the module docstring); returns ``out``."""
    spec = {"schema": SCHEMA, "inputs": list(INPUTS), "output": OUTPUT, "dim": int(encoder.dim),
            "max_length": int(encoder.max_length), "normalize": bool(encoder.normalize),
            "pooling": "mean over attention_mask", "encoder": encoder.name}
    return export_text_encoder(
        encoder, out, kind="dense", output=OUTPUT, spec=spec, opset=opset, exporter=exporter, source=source,
        check=lambda path: check_parity(encoder, path, list(texts or DEFAULT_TEXTS), max_abs_diff))


class OnnxDenseEncoder(OnnxTextEncoder):
    """Dense query encoding from an exported folder: ``encode`` gives [len(texts), dim] embeddings (unit length when
    the folder's dense.json says ``normalize``)."""

    kind, output = "dense", OUTPUT
