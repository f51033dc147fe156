"""Does the exported model give the same answers as the PyTorch student? Two checks, both hard.

Over every held-out batch, PyTorch (fp32, eval mode) and onnxruntime see the
same inputs:

1. logits: max |onnx - torch| over all samples and classes <= ``max_abs_diff``
   (a NaN or inf in the ONNX outputs fails outright: NaN compares false with
   any bound, so it is counted separately rather than trusted to a ``>``);
2. task metric: top-1 accuracy from the ONNX logits vs from the PyTorch logits
   on the same batches, |difference| <= ``metric_abs_diff``. Small logit
   differences can still flip an argmax; this check says whether they did
   enough to change the number a user reads on the model card.

Batches without labels (a bare module, random inputs) use PyTorch's own argmax
as the label, so the metric becomes top-1 agreement with PyTorch. A failure
raises ExportCheckError carrying the measured numbers; nothing is ever only
warned about.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.export.errors import ExportCheckError
from zoo.export.profiles import ExportProfile


def check_parity(model: nn.Module, onnx_path: Path, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
                 profile: ExportProfile, threads: int | None = None) -> dict[str, Any]:
    """Run both checks over ``batches`` of (inputs, targets or None); return the measured numbers."""
    from zoo.export.runtime import OnnxSession

    runner = OnnxSession(onnx_path, threads=threads)
    model = model.eval()
    n = correct_torch = correct_onnx = agree = nonfinite = batches_seen = 0
    max_diff, diff_sum, single_row_diff = 0.0, 0.0, None
    labels = "targets"
    for inputs, targets in batches:
        with torch.inference_mode():
            ref = model(inputs.float()).float().cpu().numpy()
        got = runner.run(inputs.cpu().numpy())
        if got.shape != ref.shape:
            raise ExportCheckError(f"ONNX logits have shape {got.shape}, PyTorch's {ref.shape}")
        if batches_seen == 0 and profile.dynamic_batch and len(inputs) > 1:
            # The held-out batches may all have one size; a dynamic batch axis must also take a single row.
            single_row_diff = float(np.abs(runner.run(inputs[:1].cpu().numpy()) - ref[:1]).max())
        finite = np.isfinite(got)
        nonfinite += int((~finite).sum())
        diff = np.abs(np.where(finite, got, 0.0).astype(np.float64) - ref)
        max_diff = max(max_diff, float(diff.max()))
        diff_sum += float(diff.sum())
        if targets is None:
            labels, target = "torch_argmax", ref.argmax(-1)
        else:
            target = targets.cpu().numpy()
        correct_torch += int((ref.argmax(-1) == target).sum())
        correct_onnx += int((got.argmax(-1) == target).sum())
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        n += len(ref)
        batches_seen += 1
    if n == 0:
        raise ExportCheckError("no held-out samples to check the export against")
    if single_row_diff is not None:
        max_diff = max(max_diff, single_row_diff)
    result = {"samples": n, "batches": batches_seen, "providers": runner.session.get_providers(), "labels": labels,
              "max_abs_diff": max_diff, "mean_abs_diff": diff_sum / (n * ref.shape[-1]),
              "single_row_max_abs_diff": single_row_diff, "nonfinite_outputs": nonfinite,
              "max_abs_diff_tolerance": profile.max_abs_diff, "metric": "top1_acc",
              "metric_torch": correct_torch / n, "metric_onnx": correct_onnx / n,
              "metric_abs_diff": abs(correct_onnx - correct_torch) / n,
              "metric_abs_diff_tolerance": profile.metric_abs_diff, "argmax_agreement": agree / n}
    problems = violations(result)
    if problems:
        raise ExportCheckError(f"export check failed (profile '{profile.name}', {n} held-out samples): "
                               + "; ".join(problems),
                               "the ONNX graph does not compute what the PyTorch student computes; nothing was "
                               "written. Try exporter: torchscript in the profile, or a looser profile if the "
                               "difference is expected (fp16)")
    return {**result, "passed": True}


def violations(result: dict[str, Any]) -> list[str]:
    """The checks a parity result fails, as sentences; empty when it passes."""
    problems = []
    if result["nonfinite_outputs"]:
        problems.append(f"{result['nonfinite_outputs']} ONNX output value(s) are NaN or infinite")
    # Written as `not (a <= b)` so that a NaN fails the check instead of passing it.
    if not result["max_abs_diff"] <= result["max_abs_diff_tolerance"]:
        problems.append(f"logits differ by up to {result['max_abs_diff']:.3g} "
                        f"(tolerance {result['max_abs_diff_tolerance']:.3g})")
    if not result["metric_abs_diff"] <= result["metric_abs_diff_tolerance"]:
        problems.append(f"top-1 accuracy {result['metric_onnx']:.4f} from ONNX vs {result['metric_torch']:.4f} "
                        f"from PyTorch (allowed difference {result['metric_abs_diff_tolerance']:.4g})")
    return problems



RECORD_TOLERANCE = 0.002  # top-1 accuracy: another device or thread count may flip an argmax or two, not more


def check_against_record(parity: dict[str, Any], record, fingerprint: str, smoke: bool = False) -> dict[str, Any]:
    """The run's weights must score what its record says: PyTorch's top-1 accuracy on the test split, measured
    here, against the record's ``test/acc``, when the data is the same (equal fingerprints). A student.safetensors
    damaged or swapped after the run passes the ONNX-vs-PyTorch check (both read the damaged weights) but not this
    one. A smoke run's record (``smoke``) measured only its first evaluation batches: nothing to compare. Returns
    the fields it adds to the parity report."""
    recorded = record.metrics.get("test/acc")
    same_data = record.data.get("fingerprint") == fingerprint
    if recorded is None or not same_data or smoke:
        return {"record_metric": recorded, "record_checked": False}
    if not abs(parity["metric_torch"] - recorded) <= RECORD_TOLERANCE:
        raise ExportCheckError(f"the run's student.safetensors scores test top-1 {parity['metric_torch']:.4f} but "
                               f"its record says {recorded:.4f}: these are not the weights the run finished with",
                               "restore or re-train the run folder; nothing was exported")
    return {"record_metric": recorded, "record_checked": True, "record_tolerance": RECORD_TOLERANCE}
