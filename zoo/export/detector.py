"""A DETR student -> a checked ONNX folder: model.onnx (boxes and scores out), student.safetensors, export.json.

    zoo export run=runs/detr_kitti/<run-id> [profile=detector] [out=DIR]

The ``detection`` kind's exporter (``zoo.kinds.detection``): ``zoo export`` sends detection runs here. The graph:

    inputs      float [B, 3, H, W]  ImageNet-normalised, zero-padded to the fixed canvas H x W
    pixel_mask  int64 [B, H, W]     1 = real pixel
    ->  boxes   float [B, Q, 4]     normalised (cx, cy, w, h) of the unpadded image, one per query
        scores  float [B, Q, C]     per-class sigmoid probabilities (focal heads: no background class)

Post-processing (top-k over queries x classes, scaling to pixels) stays outside the graph, as in
``zoo.metrics.detection.detections``: it is a few lines in any runtime, and keeping it out keeps the graph free
of data-dependent shapes. H x W is the data module's canvas (``image_size``: KITTI 384 x 1280, the mini
set 64 x 192): smaller images are padded into it with their pixel mask, exactly as training batches are.

Exporter: the TorchScript exporter. With torch 2.14 the dynamo exporter writes a Deformable DETR graph
that onnxruntime refuses to load ("Node input 'sigmoid_min_1' is not a graph input ..."); the TorchScript
one matches PyTorch to ~1e-7. Checks, both hard, over the run's whole test split: max |onnx - torch| of
scores and boxes <= the profile's ``max_abs_diff``, and mAP computed from the ONNX outputs vs from
PyTorch's within ``metric_abs_diff``. A failure leaves nothing behind (temp folder, renamed at the end).
"""

import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.atomic import atomic_folder, write_json
from zoo.errors import ConfigError
from zoo.export.errors import ExportCheckError, ExportError
from zoo.export.graph import checked_graph
from zoo.export.profiles import ExportProfile, load_profile
from zoo.export.report import ExportResult, export_report, file_entries, is_export_folder, run_source
from zoo.metrics.detection import detections, metric_targets

INPUTS, OUTPUTS = ["inputs", "pixel_mask"], ["boxes", "scores"]


class BoxesAndScores(nn.Module):
    """A detector wrapper as a plain (inputs, pixel_mask) -> (boxes, scores) module for export."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, inputs: torch.Tensor, pixel_mask: torch.Tensor):
        out = self.detector(inputs, pixel_mask)
        return out.pred_boxes, out.logits.sigmoid()


def pad_to(batch: dict[str, Any], canvas: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A detection batch zero-padded (mask 0) to the fixed canvas (H, W) of the export."""
    inputs, mask = batch["inputs"], batch["pixel_mask"]
    height, width = canvas
    padded = inputs.new_zeros(len(inputs), 3, height, width)
    padded_mask = mask.new_zeros(len(inputs), height, width)
    padded[:, :, :inputs.shape[2], :inputs.shape[3]] = inputs
    padded_mask[:, :mask.shape[1], :mask.shape[2]] = mask
    return padded, padded_mask


def to_onnx(model: nn.Module, path: Path, canvas: tuple[int, int], profile: ExportProfile) -> None:
    example = (torch.randn(2, 3, *canvas, generator=torch.Generator().manual_seed(0)),
               torch.ones(2, *canvas, dtype=torch.long))
    axes = {name: {0: "batch"} for name in INPUTS + OUTPUTS} if profile.dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            torch.onnx.export(BoxesAndScores(model).eval(), example, str(path), dynamo=False, input_names=INPUTS,
                              output_names=OUTPUTS, dynamic_axes=axes, opset_version=profile.opset)
    except Exception as err:  # TorchScript tracer errors share no base class
        raise ExportError(f"torch.onnx.export (torchscript) failed for {type(model).__name__}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}") from err


def check_parity(model: nn.Module, path: Path, datamodule, profile: ExportProfile, split: str = "test"):
    """Max |diff| of boxes and scores, and mAP from ONNX vs PyTorch outputs, over the whole split."""
    import onnxruntime as ort
    from torchmetrics.detection import MeanAveragePrecision

    checked_graph(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    maps = {k: MeanAveragePrecision(iou_type="bbox", backend="pycocotools") for k in ("torch", "onnx")}
    max_diff, samples, nonfinite = 0.0, 0, 0
    canvas = tuple(int(s) for s in datamodule.input_shape[1:])
    for batch in datamodule.eval_loader(split):
        inputs, mask = pad_to(batch, canvas)
        with torch.inference_mode():
            ref = [t.numpy() for t in BoxesAndScores(model).eval()(inputs, mask)]
        got = session.run(OUTPUTS, {"inputs": inputs.numpy(), "pixel_mask": mask.numpy()})
        nonfinite += sum(int((~np.isfinite(g)).sum()) for g in got)
        max_diff = max(max_diff, *(float(np.abs(np.nan_to_num(g) - r).max()) for g, r in zip(got, ref, strict=True)))
        sizes = torch.stack([t["orig_size"] for t in batch["targets"]])
        targets = metric_targets(batch["targets"], datamodule.num_classes)
        for key, (boxes, scores) in (("torch", ref), ("onnx", got)):
            maps[key].update(detections(torch.from_numpy(scores), torch.from_numpy(boxes), sizes), targets)
        samples += len(inputs)
    metric = {key: float(m.compute()["map"]) for key, m in maps.items()}
    result = {"split": split, "samples": samples, "max_abs_diff": max_diff, "nonfinite_outputs": nonfinite,
              "max_abs_diff_tolerance": profile.max_abs_diff, "metric": "map", "metric_torch": metric["torch"],
              "metric_onnx": metric["onnx"], "metric_abs_diff": abs(metric["onnx"] - metric["torch"]),
              "metric_abs_diff_tolerance": profile.metric_abs_diff}
    if nonfinite or not max_diff <= profile.max_abs_diff or not result["metric_abs_diff"] <= profile.metric_abs_diff:
        raise ExportCheckError(f"detector export check failed: max |diff| {max_diff:.3g} (tolerance "
                               f"{profile.max_abs_diff:.3g}), mAP {metric['onnx']:.4f} onnx vs {metric['torch']:.4f} "
                               f"torch, {nonfinite} non-finite output(s)", "nothing was written")
    return {**result, "passed": True}


def export_detector_run(loaded, out: Path | None = None, profile: ExportProfile | str = "detector",
                        say: Callable[[str], None] = print) -> ExportResult:
    """Export a finished detection run's student (``loaded``: ``zoo.runs.LoadedRun``) to ``out`` (default
    ``<run>/export/<profile>``)."""
    profile = load_profile(profile) if isinstance(profile, str) else profile
    if profile.precision != "fp32":
        raise ConfigError(f"detector export supports fp32 only, profile '{profile.name}' is {profile.precision}",
                          "use profile=detector")
    record, cfg, datamodule = loaded.record, loaded.cfg, loaded.datamodule
    out = Path(out or loaded.run_dir / "export" / profile.name).expanduser().resolve()
    canvas = tuple(int(s) for s in datamodule.input_shape[1:])
    # atomic_folder refuses a foreign out before anything is said or exported
    with atomic_folder(out, is_export_folder, "an export folder", "pass out=<a new folder>") as tmp:
        say(f"exporting {cfg.student.arch} of {record.task}/{record.run_id} (canvas {canvas[0]}x{canvas[1]}) ...")
        started = time.perf_counter()
        to_onnx(loaded.student, tmp / "model.onnx", canvas, profile)
        exported = time.perf_counter()
        parity = check_parity(loaded.student, tmp / "model.onnx", datamodule, profile)
        shutil.copyfile(loaded.run_dir / "student.safetensors", tmp / "student.safetensors")
        files = file_entries(tmp, ("model.onnx", "student.safetensors"))
        io = {"inputs": {"inputs": [None, 3, *canvas], "pixel_mask": [None, *canvas]},
              "outputs": {"boxes": "[B, Q, 4] normalised cxcywh", "scores": "[B, Q, C] sigmoid"},
              "classes": list(datamodule.classes), "mean_std": "imagenet"}
        seconds = {"export": round(exported - started, 3), "check": round(time.perf_counter() - exported, 3)}
        report = export_report(kind="detector", profile=profile.to_dict(), io=io, source=run_source(loaded),
                               parity=parity, files=files, seconds=seconds)
        write_json(tmp / "export.json", report)
    say(f"checked on {parity['samples']} {parity['split']} images: max |diff| {parity['max_abs_diff']:.2e}, "
        f"mAP {parity['metric_onnx']:.4f} (onnx) vs {parity['metric_torch']:.4f} (torch)")
    say(f"exported -> {out}")
    return ExportResult(out, report)
