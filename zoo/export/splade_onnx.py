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
The graph steps and the staged folder writer (``to_onnx``, ``check_graph``, ``paired_outputs``,
``export_text_encoder``) are shared with the dense exporter (zoo.export.dense_onnx).
Exporter: torch's dynamo exporter (``torch.export`` + onnxscript) as ``zoo.export.onnx_export``; ``exporter=
"torchscript"`` is the fallback for a model torch.export cannot capture.
"""

import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.export.errors import ExportCheckError, ExportError

INPUTS, OUTPUT = ("input_ids", "attention_mask"), "weights"
SCHEMA = 1
DEFAULT_TEXTS = (
    "what about the band's first song? [SEP] the band was formed in london [SEP] who founded the band?",
    "paris is the capital of france", "how old is the king", "a", "which river flows through the city of london",
    "is football the most popular game in england? [SEP] yes, by far",
)


def to_onnx(encoder: nn.Module, path: Path, opset: int = 18, exporter: str = "dynamo", output: str = OUTPUT) -> None:
    """Export ``encoder.forward(input_ids, attention_mask) -> output`` with dynamic batch and sequence axes.

    Any text encoder with ``tokenize(texts)`` and ``device`` (zoo.export.dense_onnx uses it too)."""
    encoder = encoder.eval()
    # torch.export specialises a dimension whose example size is 1: trace with 2 texts of > 1 token.
    example = encoder.tokenize(["what about the first album of the band?", "the king"])
    args = tuple(example[name].cpu() for name in INPUTS)
    device = encoder.device
    encoder.cpu()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter chatter (legacy notice, dim renaming)
            if exporter == "dynamo":
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
                dynamic = {name: {0: batch, 1: seq} for name in INPUTS}
                torch.onnx.export(encoder, args, str(path), dynamo=True, input_names=list(INPUTS),
                                  output_names=[output], dynamic_shapes=dynamic, opset_version=opset,
                                  external_data=False, verbose=False)
            elif exporter == "torchscript":
                axes = {**{name: {0: "batch", 1: "sequence"} for name in INPUTS}, output: {0: "batch"}}
                torch.onnx.export(encoder, args, str(path), dynamo=False, input_names=list(INPUTS),
                                  output_names=[output], dynamic_axes=axes, opset_version=opset)
            else:
                raise ExportError(f"unknown exporter '{exporter}'", "exporter is dynamo or torchscript")
    except ExportError:
        raise
    except Exception as err:  # torch.export, onnxscript and TorchScript errors share no base class
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        name = getattr(encoder, "name", type(encoder).__name__)
        raise ExportError(f"torch.onnx.export ({exporter}) failed for {name}: {first}",
                          "try exporter='torchscript'") from err
    finally:
        encoder.to(device)


def check_graph(path: Path, opset: int, output: str = OUTPUT) -> dict[str, Any]:
    import onnx

    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportCheckError(f"onnx.checker rejects the exported model: {str(err).strip().splitlines()[0]}") from err
    found = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if found != opset:
        raise ExportCheckError(f"the exported model has opset {found}, asked for {opset}")
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i.name for i in proto.graph.input if i.name not in initializers]
    outputs = [o.name for o in proto.graph.output]
    if inputs != list(INPUTS) or outputs != [output]:
        raise ExportCheckError(f"expected {list(INPUTS)} -> ['{output}'], got {inputs} -> {outputs}")
    return {"opset": found, "ir_version": proto.ir_version, "nodes": len(proto.graph.node),
            "producer": f"{proto.producer_name} {proto.producer_version}",
            "op_types": sorted({n.op_type for n in proto.graph.node})}


def paired_outputs(encoder: nn.Module, session, texts: Sequence[str], batch_size: int = 4, output: str = OUTPUT,
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(PyTorch, onnxruntime) outputs of ``encoder`` in eval mode on ``texts`` in batches of ``batch_size``, plus
    one single-text batch (a batch of one is where a traced graph most often goes wrong)."""
    encoder = encoder.eval()
    texts = list(texts)
    for batch in [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)] + [texts[:1]]:
        feed = {name: value.cpu() for name, value in encoder.tokenize(batch).items()}
        with torch.inference_mode():
            ref = encoder(**{k: v.to(encoder.device) for k, v in feed.items()}).float().cpu().numpy()
        got = session.run([output], {name: feed[name].numpy().astype(np.int64) for name in INPUTS})[0]
        if got.shape != ref.shape:
            raise ExportCheckError(f"ONNX output '{output}' has shape {got.shape}, PyTorch's {ref.shape}")
        yield ref, got


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
    for ref, got in paired_outputs(encoder, session, texts, batch_size):
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


def export_text_encoder(encoder: nn.Module, out: str | Path, *, kind: str, output: str, spec: dict[str, Any],
                        check: Callable[[Path], dict[str, Any]], opset: int, exporter: str,
                        source: dict[str, Any] | None) -> Path:
    """The staged folder every text encoder export writes: the graph (``to_onnx``, ``check_graph``), ``check``'s
    parity numbers, ``tokenizer/``, ``<kind>.json`` (``spec``) and ``export.json``; renamed into ``out`` only
    after every check passed."""
    from zoo.export.onnx_export import _write_json, staged_export
    from zoo.records import hardware, now_iso, package_versions

    out = Path(out).expanduser().resolve()
    started = time.perf_counter()
    with staged_export(out) as tmp:
        to_onnx(encoder, tmp / "model.onnx", opset, exporter, output=output)
        exported = time.perf_counter()
        graph = check_graph(tmp / "model.onnx", opset, output=output)
        parity = check(tmp / "model.onnx")
        checked = time.perf_counter()
        encoder.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        _write_json(tmp / f"{kind}.json", spec)
        report = {"schema": SCHEMA, "created": now_iso(), "kind": f"{kind}-query-encoder", "source": source or {},
                  "exporter": exporter, "graph": graph, "parity": parity,
                  "seconds": {"export": round(exported - started, 3), "check": round(checked - exported, 3)},
                  "versions": package_versions(), "hardware": hardware()}
        _write_json(tmp / "export.json", report)
    return out


class OnnxTextEncoder:
    """Deploy-side query encoding from an exported folder (``<kind>.json``, tokenizer, ``model.onnx``): tokenizer +
    onnxruntime, no torch needed. Subclasses name the folder kind and the graph's output."""

    kind, output = "", ""

    def __init__(self, folder: str | Path, providers: list[str] | None = None, threads: int | None = None):
        from transformers import AutoTokenizer

        from zoo.export.runtime import make_session

        self.folder = Path(folder)
        self.spec = json.loads((self.folder / f"{self.kind}.json").read_text(encoding="utf-8"))
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder / "tokenizer"))
        self.session = make_session(self.folder / "model.onnx", providers, threads)

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """[len(texts), output size] float32."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="np",
                               max_length=int(max_length or self.spec["max_length"]), return_token_type_ids=False)
        feed = {name: batch[name].astype(np.int64) for name in INPUTS}
        return self.session.run([self.output], feed)[0]


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
