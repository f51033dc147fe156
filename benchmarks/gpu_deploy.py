"""The deploy parts of ``benchmarks/gpu_check.py``: export a classifier, the detector and the SPLADE query encoder
with the zoo's exporters (each with its own checks), then run each graph on the onnxruntime execution providers
worth checking, and ``zoo bench`` on the classifier.

- Exports: the ``mealv2_imagenet`` student (``export_any``, profiles ``default`` and ``fp16``), ``detr_kitti``'s
  student (``zoo.export.detector``: graph + parity and mAP over synthetic KITTI frames) and ``disco_topiocqa``'s
  query encoder (``export_splade``), random-initialised at their true sizes (toy archs in the dry run).
- Providers: CUDA fp32 and fp16 and TensorRT fp32 and fp16 on a GPU, the CPU provider (fp32) in the dry run. One
  this onnxruntime build does not offer is *skipped* with the reason; one that loads but falls back to another is
  *failed*. The zoo exports detectors and SPLADE encoders in fp32 only, so their CUDA fp16 variant is skipped and
  TensorRT fp16 builds fp16 engines from the fp32 graph (``trt_fp16_enable``).
- Parity: each variant's outputs against eager fp32 PyTorch on the same device (TF32 off for the reference) on one
  seeded batch, within the export profile's tolerance scaled by the outputs' magnitude (max(1, max |ref|)); the
  classifier also checks the argmax and the zoo's own runtime (``zoo.export.runtime.OnnxSession``: host arrays in,
  its IO binding on a GPU provider) against the device-resident result.
- Speed: with IO binding, inputs and outputs stay on the device (onnxruntime reads the torch tensors in place),
  every arm timed interleaved with eager fp32 and eager fp16 (autocast; GPU only) by
  ``zoo.export.bench.time_interleaved``: latency p50 at batch 1, items/s at the throughput batch (64 on a GPU).
"""

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _timing import sync
from gpu_data import DetectionFrames, SyntheticData, words
from gpu_train import Ctx, build, splade_encoder, task_config
from torch import nn

GPU_VARIANTS = (("CUDAExecutionProvider", "fp32"), ("CUDAExecutionProvider", "fp16"),
                ("TensorrtExecutionProvider", "fp32"), ("TensorrtExecutionProvider", "fp16"))
CPU_VARIANTS = (("CPUExecutionProvider", "fp32"),)
SHORT = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "tensorrt", "CPUExecutionProvider": "cpu"}
ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


@dataclass
class Deployable:
    """An exported model and what it takes to run both arms: the eager model, its graphs by precision, inputs of
    any batch size (on the CPU, fp32 / int64), the eager forward returning the graph's outputs in order."""

    name: str
    model: nn.Module
    graphs: dict[str, Path]
    feeds: Callable[[int], dict[str, torch.Tensor]]
    forward: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, ...]]
    tolerance: dict[str, float]
    check: dict[str, Any]                      # the zoo exporter's own check numbers
    classifier: bool = False
    notes: list[str] = field(default_factory=list)


# -- the three exports --------------------------------------------------------------------------------------------
def classifier(ctx: Ctx) -> Deployable:
    """The MEAL V2 student (``resnet50.ram_in1k``, 224 px, 1,000 classes), exported as ``zoo export`` exports a
    classifier, in fp32 and fp16."""
    from zoo.export.classifier import export_any
    from zoo.export.profiles import load_profile

    cfg = task_config("mealv2_imagenet", ctx, [], [])
    arch, shape, classes = ("convnet.small", (3, 32, 32), 10) if ctx.tiny else (
        cfg.student.arch, (3, int(cfg.data.image_size), int(cfg.data.image_size)), 1000)
    torch.manual_seed(0)
    model = build(arch, classes, shape, {}).eval()
    graphs, check = {}, {}
    for profile in ("default", "fp16"):
        precision = load_profile(profile).precision
        result = export_any(model, ctx.work / f"classifier-{precision}", arch=arch, input_shape=shape,
                            num_classes=classes, profile=profile, tag=f"gpu-check-{precision}", samples=8)
        graphs[precision] = result.folder / "model.onnx"
        check[precision] = result.report["parity"]
    ctx.artifacts["classifier"] = graphs["fp32"].parent  # zoo bench's model=
    return Deployable(
        arch, model, graphs, lambda n: {"inputs": torch.randn(n, *shape, generator=torch.Generator().manual_seed(n))},
        lambda feed: (model(feed["inputs"]),), {"fp32": load_profile("default").max_abs_diff,
                                                "fp16": load_profile("fp16").max_abs_diff}, check, classifier=True)


def detector(ctx: Ctx) -> Deployable:
    """``detr_kitti``'s Deformable DETR-R18 student on the KITTI canvas (384 x 1280), graph (inputs, pixel_mask) ->
    (boxes, scores), checked by the detector exporter's own parity and mAP check on synthetic frames."""
    from zoo.archs import arch_kwargs
    from zoo.export.detector import BoxesAndScores, check_parity, to_onnx
    from zoo.export.profiles import load_profile

    cfg = task_config("detr_kitti", ctx, ["student.kwargs.pretrained_backbone=false"],
                      ["data=kitti_mini", "data.image_size=[48,144]"])
    canvas = tuple(int(s) for s in cfg.data.image_size)
    torch.manual_seed(0)
    model = build(cfg.student.arch, 3, (3, *canvas), arch_kwargs(cfg.student)).eval()
    profile = load_profile("detector")
    folder = ctx.work / "detector"
    folder.mkdir(parents=True, exist_ok=True)
    to_onnx(model, folder / "model.onnx", canvas, profile)
    frames = SyntheticData("detection", DetectionFrames(4, canvas, 3, (375, 1242)), 2, num_classes=3,
                           input_shape=(3, *canvas), eval_batch_size=2, collate_fn=_collate_detection())
    check = check_parity(model, folder / "model.onnx", frames, profile)
    wrapped = BoxesAndScores(model).eval()

    def feeds(n):
        return {"inputs": torch.randn(n, 3, *canvas, generator=torch.Generator().manual_seed(n)),
                "pixel_mask": torch.ones(n, *canvas, dtype=torch.long)}

    return Deployable(cfg.student.arch, wrapped, {"fp32": folder / "model.onnx"}, feeds,
                      lambda feed: wrapped(feed["inputs"], feed["pixel_mask"]), {"fp32": profile.max_abs_diff},
                      {"fp32": check}, notes=["fp32 only: the zoo's detector exporter has no fp16 profile"])


def _collate_detection():
    from zoo.data.detection import collate_detection

    return collate_detection


def splade(ctx: Ctx) -> Deployable:
    """``disco_topiocqa``'s query encoder (SPLADE++'s architecture, ``gpu_train.SPLADE_NOTE``), exported with the
    sparse head in the graph; inputs at the method's query length (256 tokens)."""
    from gpu_train import SPLADE_NOTE

    from zoo.export.splade_onnx import export_splade

    cfg = task_config("disco_topiocqa", ctx, [], ["method.max_length_query=16"])
    length = int(cfg.method.max_length_query)
    torch.manual_seed(0)
    encoder = splade_encoder(ctx, length, "splade.query")
    vocab = len(encoder.tokenizer)
    rng = np.random.default_rng(0)
    texts = [words(rng, count, vocab) for count in (length - 2, length // 2, 7, 1, length // 3, 3)]
    folder = export_splade(encoder, ctx.work / "splade", texts=texts)
    check = json.loads((folder / "export.json").read_text(encoding="utf-8"))["parity"]

    def feeds(n):
        ids = torch.randint(5, vocab, (n, length), generator=torch.Generator().manual_seed(n))
        ids[:, 0], ids[:, -1] = 2, 3
        return {"input_ids": ids, "attention_mask": torch.ones(n, length, dtype=torch.long)}

    return Deployable("splade.query", encoder, {"fp32": folder / "model.onnx"}, feeds,
                      lambda feed: (encoder(feed["input_ids"], feed["attention_mask"]),), {"fp32": 1e-4},
                      {"fp32": check}, notes=[SPLADE_NOTE, f"queries of {length} tokens (the method's maximum)",
                                              "fp32 only: the zoo's SPLADE exporter has no fp16 variant"])


# -- providers, parity and speed ------------------------------------------------------------------------------------
def plan_variants(ctx: Ctx, deployable: Deployable, available: list[str]) -> list[dict[str, Any]]:
    """The variants to try: available ones with the graph to load, the rest skipped with the reason."""
    import onnxruntime as ort

    plan = []
    for provider, precision in (CPU_VARIANTS if ctx.tiny else GPU_VARIANTS):
        variant = {"provider": provider, "precision": precision, "name": f"ort_{SHORT[provider]}_{precision}"}
        trt_fp16 = provider == "TensorrtExecutionProvider" and precision == "fp16"
        graph = deployable.graphs.get(precision) or (deployable.graphs["fp32"] if trt_fp16 else None)
        if provider not in available:
            variant.update(status="skipped", reason=f"onnxruntime {ort.__version__} offers no {provider} (it has "
                                                    f"{', '.join(available)}): install onnxruntime-gpu"
                                                    + (" and TensorRT" if "Tensorrt" in provider else ""))
        elif graph is None:
            variant.update(status="skipped", reason=f"no {precision} graph: {deployable.notes[-1]}")
        else:
            variant.update(status="pending", graph=graph)
        plan.append(variant)
    return plan


def open_session(ctx: Ctx, variant: dict[str, Any]):
    """An InferenceSession on the variant's provider (CPU as the fallback onnxruntime may take, which fails it)."""
    import onnxruntime as ort

    options = {}
    if variant["provider"] == "TensorrtExecutionProvider":
        options = {"trt_fp16_enable": variant["precision"] == "fp16", "trt_engine_cache_enable": True,
                   "trt_engine_cache_path": str(ctx.work / "trt-cache")}
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3
    providers = [(variant["provider"], options)] + ([] if variant["provider"] == "CPUExecutionProvider"
                                                    else ["CPUExecutionProvider"])
    session = ort.InferenceSession(str(variant["graph"]), sess_options=session_options, providers=providers)
    if session.get_providers()[0] != variant["provider"]:
        raise RuntimeError(f"onnxruntime fell back to {session.get_providers()[0]} for {variant['provider']}")
    return session


def bound_runner(session, feeds: dict[str, torch.Tensor], device: str):
    """``run()`` through an IO binding whose inputs are the (device) torch tensors in place and whose outputs stay on
    the device (``binding.copy_outputs_to_cpu()`` reads them); returns ``(run, binding)``."""
    binding = session.io_binding()
    kind, index = ("cuda", torch.cuda.current_device()) if device == "cuda" else ("cpu", 0)
    wanted = {i.name: ONNX_DTYPES[i.type] for i in session.get_inputs()}
    held = {name: feeds[name].to(device=device, dtype=_torch_dtype(dtype)).contiguous()
            for name, dtype in wanted.items()}
    for name, tensor in held.items():
        binding.bind_input(name, kind, index, wanted[name], list(tensor.shape), tensor.data_ptr())
    for output in session.get_outputs():
        binding.bind_output(output.name, kind, index)

    def run():
        session.run_with_iobinding(binding)

    run.held = held  # the bound tensors live as long as the runner
    return run, binding


def _torch_dtype(dtype) -> torch.dtype:
    return {np.float32: torch.float32, np.float16: torch.float16, np.int64: torch.int64}[dtype]


def parity(ctx: Ctx, deployable: Deployable, variant: dict[str, Any], session, batch: int) -> dict[str, Any]:
    """Outputs of the variant vs eager fp32 on the same device, on one seeded batch."""
    feeds = deployable.feeds(batch)
    with torch.inference_mode(), no_tf32():
        reference = [t.float().cpu().numpy() for t in deployable.forward(_on(feeds, ctx.device))]
    run, binding = bound_runner(session, feeds, ctx.device)
    run()
    got = [np.asarray(value, dtype=np.float32) for value in binding.copy_outputs_to_cpu()]
    scale = max(1.0, max(float(np.abs(r).max()) for r in reference))
    tolerance = deployable.tolerance.get(variant["precision"], deployable.tolerance["fp32"] * 500) * scale
    diff = max(float(np.abs(np.nan_to_num(g, nan=np.inf) - r).max()) for g, r in zip(got, reference, strict=True))
    result = {"batch": batch, "max_abs_diff": diff, "max_abs_ref": scale, "tolerance": tolerance,
              "passed": diff <= tolerance}
    if deployable.classifier:
        result["argmax_agreement"] = float((got[0].argmax(-1) == reference[0].argmax(-1)).mean())
        result["zoo_runtime_max_abs_diff"] = zoo_runtime_diff(variant, feeds, got[0])
        result["passed"] = result["passed"] and result["zoo_runtime_max_abs_diff"] <= tolerance
    return result


def zoo_runtime_diff(variant: dict[str, Any], feeds: dict[str, torch.Tensor], bound: np.ndarray) -> float:
    """The zoo's deploy runtime (host arrays; on a GPU provider its own IO binding) against the bound result."""
    from zoo.export.runtime import OnnxSession

    providers = [variant["provider"]] + ([] if variant["provider"] == "CPUExecutionProvider"
                                         else ["CPUExecutionProvider"])
    runner = OnnxSession(variant["graph"], providers=providers)
    if runner.provider != variant["provider"]:
        raise RuntimeError(f"zoo.export.runtime fell back to {runner.provider} for {variant['provider']}")
    return float(np.abs(runner.run(feeds["inputs"].numpy()) - bound).max())


def _on(feeds: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {name: value.to(device) for name, value in feeds.items()}


class no_tf32:
    """TF32 off for an fp32 reference (PyTorch allows it for cuDNN convolutions by default)."""

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def eager_arm(deployable: Deployable, feeds: dict[str, torch.Tensor], device: str, fp16: bool):
    on_device = _on(feeds, device)

    def run():
        with torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext():
            out = deployable.forward(on_device)
        sync()
        return out

    return run


def speed(ctx: Ctx, deployable: Deployable, sessions: dict[str, Any], batches: tuple[int, int],
          iters: tuple[int, int]) -> dict[str, dict[str, float]]:
    """Latency p50 (ms) at the first batch size and items/s at the second, every arm interleaved."""
    from zoo.export.bench import summarize, time_interleaved

    result: dict[str, dict[str, float]] = {}
    for batch, count, key in ((batches[0], iters[0], "latency"), (batches[1], iters[1], "throughput")):
        feeds = deployable.feeds(batch)
        arms = {"eager_fp32": eager_arm(deployable, feeds, ctx.device, False)}
        if ctx.device == "cuda":
            arms["eager_fp16"] = eager_arm(deployable, feeds, ctx.device, True)
        for name, session in sessions.items():
            runner, _ = bound_runner(session, feeds, ctx.device)
            arms[name] = lambda runner=runner: (runner(), sync())
        with torch.inference_mode():
            seconds = time_interleaved(arms, warmup=max(1, count // 5), iters=count)
        for name, values in seconds.items():
            numbers = summarize(values, batch)
            entry = result.setdefault(name, {})
            if key == "latency":
                entry.update(latency_batch=batch, latency_ms_p50=numbers["p50_ms"], latency_ms_p95=numbers["p95_ms"])
            else:
                entry.update(throughput_batch=batch, items_per_s=numbers["items_per_s"])
    return result


def check_deployable(ctx: Ctx, make: Callable[[Ctx], Deployable], settings: dict[str, Any]) -> dict[str, Any]:
    """Export, then every variant's parity, then the speed of eager and of the variants that passed."""
    import onnxruntime as ort

    deployable = make(ctx)
    deployable.model.to(ctx.device)
    available = ort.get_available_providers()
    variants, sessions = plan_variants(ctx, deployable, available), {}
    for variant in variants:
        if variant["status"] != "pending":
            continue
        try:
            session = open_session(ctx, variant)
            variant["parity"] = parity(ctx, deployable, variant, session, settings["parity_batch"])
            if variant["parity"]["passed"]:
                variant["status"], sessions[variant["name"]] = "ok", session
            else:
                variant.update(status="failed", reason=f"outputs differ by {variant['parity']['max_abs_diff']:.3g} "
                                                       f"(tolerance {variant['parity']['tolerance']:.3g})")
        except Exception as err:  # noqa: BLE001 - one variant's failure is recorded, the others still run
            variant.update(status="failed", reason=one_line(err))
    timings = speed(ctx, deployable, sessions, settings["batches"], settings["iters"])
    for variant in variants:
        variant.pop("graph", None)
        variant.update(timings.get(variant["name"], {}))
    deployable.model.cpu()
    return {"model": deployable.name, "export_check": deployable.check, "onnx_mb": {
                precision: round(path.stat().st_size / 2**20, 1) for precision, path in deployable.graphs.items()},
            "eager": {name: numbers for name, numbers in timings.items() if name.startswith("eager")},
            "variants": variants, "providers_available": available, "notes": deployable.notes}


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def export_parts() -> dict[str, Callable[[Ctx], Deployable]]:
    return {"classifier": classifier, "detector": detector, "splade": splade}


def bench_classifier(ctx: Ctx, settings: dict[str, Any], out: Path) -> dict[str, Any]:
    """``zoo bench model=<the classifier's fp32 export>`` (exported here if the export part did not run), its
    record copied to ``out/bench.json``."""
    from zoo.export.bench import bench

    folder = ctx.artifacts.get("classifier")
    if folder is None or not Path(folder).is_dir():
        classifier(ctx)
        folder = ctx.artifacts["classifier"]
    record, path = bench(model=str(folder), batches=list(settings["bench_batches"]), warmup=settings["bench_warmup"],
                         iters=settings["bench_iters"])
    shutil.copyfile(path, out / "bench.json")
    rows = {str(row["batch"]): {"eager_items_per_s": row["eager"]["items_per_s"],
                                "ort_items_per_s": row["ort"]["items_per_s"],
                                "ort_over_eager": row["ratio_ort_over_eager"], "max_abs_diff": row["max_abs_diff"]}
            for row in record["rows"]}
    return {"model": record["model"], "eager_device": record["eager_device"], "ort_provider": record["ort_provider"],
            "precision": record["precision"], "rows": rows, "record": "bench.json"}
