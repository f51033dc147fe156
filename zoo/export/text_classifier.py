"""A text classifier run (the ``text_classification`` kind) -> a checked ONNX folder.

    zoo export run=runs/lelp_tweets/<run-id> [out=DIR]           (default out: <run>/export/text)
    OnnxTextClassifier(DIR).predict(["what a lovely day"])      # [1, C] logits, no torch (zoo.export.text_runtime)
    zoo infer model=DIR inputs=tweets.txt                         # one text per line

The graph maps (input_ids [B, n] int64, attention_mask [B, n] int64) -> logits [B, C] float32 with dynamic batch
and sequence axes, and holds the student's whole forward: a LELP student's sum over each class's subclasses
(``zoo.archs.subclass_head``) is inside it, so the graph is an ordinary C-way classifier. The export itself and
the graph check (opset, IO names) are the text encoders' (``zoo.export.text_encoders``); opset and tolerances are
the ``default`` export profile's.

Folder (staged in a hidden temp folder and renamed into place only after every check passed): ``model.onnx``,
``tokenizer/`` (``save_pretrained`` of the tokenizer the run's data used), ``text_classifier.json`` (IO names,
classes, max length), ``card.yaml``, ``student.safetensors`` and ``export.json``.

Parity (ExportCheckError on failure, nothing written): over the run's whole test split, batched and padded as the
data module batches it, plus one single-text batch, onnxruntime against PyTorch (fp32, eval): max |logit
difference| and the top-1 accuracy difference within the profile's tolerances (``zoo.export.parity.violations``).
"""

import copy
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.atomic import atomic_folder, write_json
from zoo.errors import ConfigError
from zoo.export.errors import ExportCheckError
from zoo.export.parity import check_against_record, violations
from zoo.export.profiles import load_profile
from zoo.export.report import ExportResult, export_report, is_export_folder, run_source
from zoo.export.text_encoders import INPUTS, check_graph, to_onnx
from zoo.export.text_runtime import OUTPUT, SPEC_FILE

SCHEMA = 1


class TokenClassifier(nn.Module):
    """A text classifier taking ``{"input_ids", "attention_mask"}`` as a module of two tensors, with its tokenizer
    (what ``text_encoders.to_onnx`` traces)."""

    def __init__(self, student: nn.Module, tokenizer, max_length: int, name: str):
        super().__init__()
        self.student, self.tokenizer, self.max_length, self.name = student, tokenizer, max_length, name

    @property
    def device(self) -> torch.device:
        return next(self.student.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt", return_token_type_ids=False))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.student({"input_ids": input_ids, "attention_mask": attention_mask})


def check_parity(model: TokenClassifier, onnx_path: Path, loader, max_abs_diff: float,
                 metric_abs_diff: float) -> dict[str, Any]:
    """onnxruntime vs PyTorch logits over every batch of ``loader`` (dict batches with ``targets``)."""
    from zoo.export.runtime import make_session

    session = make_session(Path(onnx_path), threads=None)
    model = model.eval()
    n = correct_torch = correct_onnx = agree = nonfinite = 0
    max_diff, single_row_diff = 0.0, None
    for batch in loader:
        feed = {name: batch["inputs"][name].cpu() for name in INPUTS}
        with torch.inference_mode():
            ref = model(**feed).float().numpy()
        got = session.run([OUTPUT], {name: value.numpy().astype(np.int64) for name, value in feed.items()})[0]
        if got.shape != ref.shape:
            raise ExportCheckError(f"ONNX logits have shape {got.shape}, PyTorch's {ref.shape}")
        if single_row_diff is None:  # a batch of one is where a traced graph most often goes wrong
            one = {name: value[:1, :int(feed["attention_mask"][0].sum())].numpy().astype(np.int64)
                   for name, value in feed.items()}
            single_row_diff = float(np.abs(session.run([OUTPUT], one)[0] - ref[:1]).max())
        finite = np.isfinite(got)
        nonfinite += int((~finite).sum())
        max_diff = max(max_diff, float(np.abs(np.where(finite, got, 0.0) - ref).max()))
        target = batch["targets"].numpy()
        correct_torch += int((ref.argmax(-1) == target).sum())
        correct_onnx += int((got.argmax(-1) == target).sum())
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        n += len(ref)
    if n == 0:
        raise ExportCheckError("no held-out texts to check the export against")
    result = {"samples": n, "providers": session.get_providers(), "labels": "targets",
              "max_abs_diff": max(max_diff, single_row_diff), "single_row_max_abs_diff": single_row_diff,
              "nonfinite_outputs": nonfinite, "max_abs_diff_tolerance": max_abs_diff, "metric": "top1_acc",
              "metric_torch": correct_torch / n, "metric_onnx": correct_onnx / n,
              "metric_abs_diff": abs(correct_onnx - correct_torch) / n, "metric_abs_diff_tolerance": metric_abs_diff,
              "argmax_agreement": agree / n}
    problems = violations(result)
    if problems:
        raise ExportCheckError(f"export check failed ({n} test texts): " + "; ".join(problems),
                               "the ONNX graph does not compute what the PyTorch student computes; nothing was "
                               "written")
    return {**result, "passed": True}


def export_text_run(loaded, out: Path | None = None, profile: str | None = None,
                    say: Callable[[str], None] = print) -> ExportResult:
    """Export the student of a finished text-classification run (``zoo.runs.load_run``), checked on its test
    split; ``out`` defaults to ``<run>/export/text``."""
    from zoo.archs.text import load_tokenizer
    from zoo.cards import InputSpec
    from zoo.export.classifier import measured_metrics, student_card, write_card

    record, cfg, datamodule, run_dir = loaded.record, loaded.cfg, loaded.datamodule, loaded.run_dir
    if "test" not in datamodule.splits:
        raise ConfigError("the data has no 'test' split to check the export on",
                          f"its splits: {', '.join(datamodule.splits)}")
    tolerance = load_profile("default")
    tokenizer = load_tokenizer(datamodule.vocabulary)
    model = TokenClassifier(copy.deepcopy(loaded.student).cpu().eval(), tokenizer, datamodule.max_length,
                            cfg.student.arch)
    out = Path(out or run_dir / "export" / "text").expanduser().resolve()
    spec = {"schema": SCHEMA, "inputs": list(INPUTS), "output": OUTPUT, "classes": list(datamodule.classes),
            "max_length": int(datamodule.max_length), "tokenizer": datamodule.vocabulary, "arch": cfg.student.arch}
    source = run_source(loaded)
    say(f"exporting the text classifier {cfg.student.arch} of {record.task}/{record.run_id} ...")
    started = time.perf_counter()
    with atomic_folder(out, is_export_folder, "an export folder", "pass out=<a new folder>") as tmp:
        to_onnx(model, tmp / "model.onnx", OUTPUT, tolerance.opset, tolerance.exporter)
        exported = time.perf_counter()
        graph = check_graph(tmp / "model.onnx", OUTPUT, tolerance.opset)
        parity = {"split": "test", **check_parity(model, tmp / "model.onnx", datamodule.eval_loader("test"),
                                                  tolerance.max_abs_diff, tolerance.metric_abs_diff)}
        parity.update(check_against_record(parity, record, datamodule.fingerprint))
        checked = time.perf_counter()
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        write_json(tmp / SPEC_FILE, spec)
        shutil.copyfile(run_dir / "student.safetensors", tmp / "student.safetensors")
        card = student_card(loaded, InputSpec(shape=[], tokenizer=datamodule.vocabulary))
        card.metrics = measured_metrics(parity, f"exporter {tolerance.exporter}")
        files = write_card(card, tmp, out, ("model.onnx", SPEC_FILE, "tokenizer"))
        report = export_report(kind="text-classifier", card=card.name, source=source, graph=graph, parity=parity,
                               files=files, exporter=tolerance.exporter,
                               seconds={"export": round(exported - started, 3), "check": round(checked - exported, 3)})
        write_json(tmp / "export.json", report)
    say(f"checked on {parity['samples']} test texts: max |logit diff| {parity['max_abs_diff']:.2e} <= "
        f"{parity['max_abs_diff_tolerance']:.0e}, top-1 {parity['metric_onnx']:.4f} (ONNX) vs "
        f"{parity['metric_torch']:.4f} (PyTorch)")
    say(f"exported -> {out}")
    return ExportResult(out, report)
