"""What every text encoder export shares (the SPLADE and the dense query encoders of retrieval runs).

The graph maps (input_ids [B, n] int64, attention_mask [B, n] int64) -> one output and holds the encoder's whole
forward, so a deployment needs only the tokenizer and onnxruntime (no torch); batch and sequence axes are dynamic.

- ``to_onnx``, ``check_graph``: the export (torch's dynamo exporter, ``torch.export`` + onnxscript, as the
  classifier exporter; ``exporter="torchscript"`` is the fallback for a model torch.export cannot capture) and
  ``onnx.checker`` (full) plus opset and IO names;
- ``paired_outputs``: PyTorch and onnxruntime outputs side by side, for each exporter's own parity check;
- ``export_text_encoder``: the folder, built in a hidden temp folder and renamed into place only after every check
  passed: ``model.onnx``, ``tokenizer/`` (``save_pretrained``), ``<kind>.json`` (IO names, sizes, max length) and
  ``export.json`` (graph facts, parity numbers, versions);
- ``OnnxTextEncoder``: the deploy side, tokenizer + onnxruntime (it lives in the torch-free
  ``zoo.export.text_runtime``, with the text classifier's).
"""

import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.atomic import atomic_folder, write_json
from zoo.export.errors import ExportCheckError, ExportError
from zoo.export.graph import checked_graph, graph_facts, graph_io
from zoo.export.report import export_report, file_entries, is_export_folder
from zoo.export.text_runtime import INPUTS

DEFAULT_TEXTS = (
    "what about the band's first song? [SEP] the band was formed in london [SEP] who founded the band?",
    "paris is the capital of france", "how old is the king", "a", "which river flows through the city of london",
    "is football the most popular game in england? [SEP] yes, by far",
)


def to_onnx(encoder: nn.Module, path: Path, output: str, opset: int = 18, exporter: str = "dynamo") -> None:
    """Export ``encoder.forward(input_ids, attention_mask) -> output`` with dynamic batch and sequence axes.

    Any text encoder with ``tokenize(texts)``, ``device`` and ``name``."""
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
        raise ExportError(f"torch.onnx.export ({exporter}) failed for {encoder.name}: {first}",
                          "try exporter='torchscript'") from err
    finally:
        encoder.to(device)


def check_graph(path: Path, output: str, opset: int) -> dict[str, Any]:
    proto = checked_graph(path)
    facts = graph_facts(proto)
    if facts["opset"] != opset:
        raise ExportCheckError(f"the exported model has opset {facts['opset']}, asked for {opset}")
    inputs, outputs = ([value.name for value in values] for values in graph_io(proto))
    if inputs != list(INPUTS) or outputs != [output]:
        raise ExportCheckError(f"expected {list(INPUTS)} -> ['{output}'], got {inputs} -> {outputs}")
    return facts


def paired_outputs(encoder: nn.Module, session, texts: Sequence[str], output: str, batch_size: int = 4,
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


def export_text_encoder(encoder: nn.Module, out: str | Path, *, kind: str, output: str, spec: dict[str, Any],
                        check: Callable[[Path], dict[str, Any]], opset: int, exporter: str,
                        source: dict[str, Any] | None) -> Path:
    """The staged folder every text encoder export writes: the graph (``to_onnx``, ``check_graph``), ``check``'s
    parity numbers, ``tokenizer/``, ``<kind>.json`` (``spec``) and ``export.json``; renamed into ``out`` only
    after every check passed."""
    out = Path(out).expanduser().resolve()
    started = time.perf_counter()
    with atomic_folder(out, is_export_folder, "an export folder", "pass out=<a new folder>") as tmp:
        to_onnx(encoder, tmp / "model.onnx", output, opset, exporter)
        exported = time.perf_counter()
        graph = check_graph(tmp / "model.onnx", output, opset)
        parity = check(tmp / "model.onnx")
        checked = time.perf_counter()
        encoder.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        write_json(tmp / f"{kind}.json", spec)
        report = export_report(kind=f"{kind}-query-encoder", source=source or {}, exporter=exporter, graph=graph,
                               parity=parity, files=file_entries(tmp, ("model.onnx", f"{kind}.json", "tokenizer")),
                               seconds={"export": round(exported - started, 3),
                                                       "check": round(checked - exported, 3)})
        write_json(tmp / "export.json", report)
    return out
