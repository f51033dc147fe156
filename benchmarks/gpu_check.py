"""GPU readiness in one command: every GPU path of the zoo exercised once, one JSON report and a readable summary.

    python benchmarks/gpu_check.py --out gpu_report                 # a CUDA machine: the real check (480 s budget)
    python benchmarks/gpu_check.py --cpu-dry-run --out /tmp/gpu_dry   # the same parts, tiny, on the CPU (< 1 min)
    python benchmarks/gpu_check.py --out DIR --parts 'train.detr_kitti.*,export.*'   # a subset (fnmatch patterns)

Parts, each with a time cap (a part past its cap, or one that raises, runs out of memory or lacks a provider, is
recorded with a one-line reason and the next part runs):

- ``train.<task>.<phase>``: a few optimiser steps of every paper task at its true model size on synthetic batches
  of the real shapes and dtypes, with the task's own precision (``benchmarks/gpu_train.py``): step time, items and
  tokens per second, peak device memory, and the GPU-hours one reproduce fit would take at that speed;
- ``export.classifier`` / ``export.detector`` / ``export.splade``: the zoo's exporters and their checks, then
  parity and speed on the CUDA and TensorRT execution providers (fp32 and fp16, IO binding) against eager PyTorch
  on the same GPU (``benchmarks/gpu_deploy.py``);
- ``bench.classifier``: ``zoo bench`` on the exported classifier; its record is written to ``DIR/bench.json``.

``DIR/gpu_check.json`` (hardware, versions, every part's status ok / failed / skipped, reason, numbers, seconds) is
rewritten after every part, so a killed run leaves what it finished; ``DIR/gpu_check.md`` is the summary table,
also printed at the end. The exit code is 1 when a part failed. Nothing is downloaded (the Hub is switched off):
teachers and students are random-initialised, and archs whose config or tokenizer live on the Hub are rebuilt
locally at their published sizes (the report says which). ``--cpu-dry-run`` runs every part on the CPU with toy
archs, small inputs, fp32 and onnxruntime's CPU provider; ``tests/test_gpu_check.py`` runs it in the fast suite.
"""

import argparse
import fnmatch
import gc
import json
import os
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()  # a script's budget counts its imports too
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers and huggingface_hub read them: fail, never wait
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402 - after the two variables above
from _timing import zoo_home  # noqa: E402
from gpu_deploy import bench_classifier, check_deployable, export_parts, one_line  # noqa: E402
from gpu_train import Ctx, phases  # noqa: E402

from zoo.atomic import atomic_write_text  # noqa: E402
from zoo.records import hardware, now_iso, package_versions  # noqa: E402

SCHEMA = 1
MIN_PART_S = 5.0  # a part is not started with less of the budget left
SETTINGS = {  # per mode; any of them can be set on the command line
    "gpu": {"budget_s": 480, "steps": 10, "warmup_steps": 3, "train_cap_s": 75, "export_cap_s": 150,
            "bench_cap_s": 60, "parity_batch": 8, "batches": (1, 64), "iters": (50, 10), "bench_batches": None,
            "bench_warmup": 5, "bench_iters": 20},
    "cpu-dry-run": {"budget_s": 240, "steps": 2, "warmup_steps": 1, "train_cap_s": 60, "export_cap_s": 60,
                    "bench_cap_s": 30, "parity_batch": 2, "batches": (1, 4), "iters": (5, 3), "bench_batches": (1, 4),
                    "bench_warmup": 1, "bench_iters": 3},
}
HELP = {
    "budget_s": "seconds for the whole run, imports included; a part is not started with less than 5 left",
    "steps": "timed optimiser steps per training phase", "warmup_steps": "untimed steps before them",
    "train_cap_s": "time cap of each training part", "export_cap_s": "time cap of each export part",
    "bench_cap_s": "time cap of the zoo bench part", "parity_batch": "rows of the parity batch per provider",
    "batches": "latency batch,throughput batch", "iters": "timed calls at the latency,throughput batch",
    "bench_batches": "zoo bench's batches", "bench_warmup": "zoo bench's warm-up calls",
    "bench_iters": "zoo bench's timed calls",
}
EXTRA_PACKAGES = ("onnxruntime", "onnxruntime-gpu", "tensorrt", "transformers", "timm", "lightning", "hydra-core",
                  "omegaconf", "pycocotools", "onnx", "onnxscript", "tokenizers")


class PartTimeout(Exception):
    """A part ran past its time cap."""


@dataclass
class Part:
    name: str
    group: str
    cap_s: float
    run: Callable[[Ctx], dict[str, Any]]


def plan(settings: dict[str, Any], out: Path) -> list[Part]:
    """Every part, in the order they run: training first (the GPU-hours), then exports, then zoo bench."""
    parts = [Part(f"train.{p.task}.{p.name}", "train", settings["train_cap_s"], p.run) for p in phases()]
    parts += [Part(f"export.{name}", "export", settings["export_cap_s"],
                   lambda ctx, make=make: check_deployable(ctx, make, settings))
              for name, make in export_parts().items()]
    parts.append(Part("bench.classifier", "bench", settings["bench_cap_s"],
                      lambda ctx: bench_classifier(ctx, settings, out)))
    return parts


def run_part(part: Part, ctx: Ctx, remaining: float) -> dict[str, Any]:
    """One part under its cap (SIGALRM raises PartTimeout in it); any failure becomes its one-line reason."""
    record: dict[str, Any] = {"name": part.name, "group": part.group, "status": "ok", "reason": None,
                              "seconds": 0.0, "cap_s": part.cap_s, "numbers": {}}
    if remaining < MIN_PART_S:
        record.update(status="skipped", reason=f"the run's budget is spent ({remaining:.0f} s left)")
        return record
    cap = min(part.cap_s, remaining)
    if ctx.device == "cuda":  # what earlier parts left on the device (their peaks are not this part's)
        record["device_mem_at_start_gib"] = round(torch.cuda.memory_allocated() / 2**30, 3)

    def expire(signum, frame):
        raise PartTimeout(f"time cap of {cap:.0f} s reached")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, cap)
    started = time.perf_counter()
    try:
        record["numbers"] = part.run(ctx)
    except BaseException as err:  # noqa: BLE001 - a part's failure must not stop the check (Ctrl-C excepted)
        if isinstance(err, KeyboardInterrupt):
            raise
        record.update(status="failed", reason=one_line(err))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        record["seconds"] = round(time.perf_counter() - started, 2)
        release(ctx)
    return record


def release(ctx: Ctx) -> None:
    """Free what a part left behind, so the next one starts with the device empty (its peak is its own)."""
    gc.collect()
    if ctx.device == "cuda":
        torch.cuda.empty_cache()


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    versions = package_versions()
    for name in EXTRA_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    versions.update(torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    info = {**hardware(), "onnxruntime_providers": ort.get_available_providers(),
            "float32_matmul_precision": torch.get_float32_matmul_precision()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                       "capability": f"{props.major}.{props.minor}", "count": torch.cuda.device_count()}
    return {"hardware": info, "versions": versions}


def write_report(out: Path, report: dict[str, Any]) -> None:
    atomic_write_text(out / "gpu_check.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / "gpu_check.md", summary(report))


def describe(part: dict[str, Any]) -> str:
    """A part's result in one line: its reason, or its headline numbers."""
    n = part["numbers"]
    if part["status"] != "ok":
        return part["reason"] or ""
    if part["group"] == "train" and "step_ms" in n:
        unit = n["unit"]
        text = (f"{n['step_ms']:.1f} ms/step (batch {n['batch']}, {n['precision']}), {n[f'{unit}_per_s']:,.0f} {unit}/s"
                + (f", {n['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in n else ""))
    elif part["group"] == "train" and "search_s" in n:
        text = f"{n['search_s']:.1f} s to score {n['candidates']} candidates x {n['seeds']} seed(s) on the CPU"
    elif part["group"] == "train":
        text = f"{n['round_s']:.1f} s per round ({n['pool_images_per_s']:,.0f} pool images/s)"
    elif part["group"] == "export":
        arms = [f"{name} {x['latency_ms_p50']:.2f} ms, {x['items_per_s']:,.0f}/s" for name, x in n["eager"].items()]
        for v in n["variants"]:
            state = (f"{v['latency_ms_p50']:.2f} ms, {v['items_per_s']:,.0f}/s, diff {v['parity']['max_abs_diff']:.1e}"
                     if v["status"] == "ok" else v["status"])
            arms.append(f"{v['name']} {state}")
        text = "; ".join(arms)
    else:
        text = "; ".join(f"b{batch}: onnxruntime/eager {row['ort_over_eager']:.2f}x"
                         for batch, row in n["rows"].items())
        text += f" ({n['ort_provider']} vs eager {n['eager_device']})"
    if "peak_mem_gib" in n:
        text += f", peak {n['peak_mem_gib']:.1f} GiB"
    if "est_gpu_hours" in n:
        text += f", ~{n['est_gpu_hours']:.3g} GPU-h per fit"
    return text


def summary(report: dict[str, Any]) -> str:
    env = report["environment"]
    gpu = env["hardware"].get("gpu", {})
    versions = env["versions"]
    device = f"{gpu['name']} ({gpu['memory_gib']} GiB)" if gpu else "CPU only"
    runtime = versions.get("onnxruntime-gpu") or versions.get("onnxruntime")
    lines = [f"# gpu_check ({report['mode']}), {report['created']}", "",
             f"{device}; torch {versions.get('torch')} (CUDA {versions.get('torch_cuda')}), transformers "
             f"{versions.get('transformers')}, onnxruntime {runtime} "
             f"({', '.join(env['hardware']['onnxruntime_providers'])}); {report['seconds']:.0f} s of a "
             f"{report['budget_s']:.0f} s budget", ""]
    if report["mode"] == "cpu-dry-run":
        lines += ["Dry run: toy archs, small inputs, fp32 on the CPU; its numbers say only that each path runs.", ""]
    lines += ["| part | status | s | result |", "|---|---|---|---|"]
    for part in report["parts"]:
        lines.append(f"| {part['name']} | {part['status']} | {part['seconds']:.1f} | {describe(part)} |")
    counts = {s: sum(p["status"] == s for p in report["parts"]) for s in ("ok", "failed", "skipped")}
    lines += ["", ", ".join(f"{count} {status}" for status, count in counts.items()), ""]
    return "\n".join(lines)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, gpu_check.md, bench.json")
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU (fp32, CPU provider)")
    parser.add_argument("--parts", default="*", help="comma-separated fnmatch patterns of the parts to run")
    for key, what in HELP.items():
        kind = (lambda text: tuple(int(b) for b in text.split(","))) if key in (
            "batches", "iters", "bench_batches") else float if key.endswith("_s") else int
        gpu, dry = (",".join(map(str, v)) if isinstance(v, tuple) else v for v in
                    (SETTINGS["gpu"][key], SETTINGS["cpu-dry-run"][key]))
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=None,
                            help=f"{what} (default {gpu or '1,8,64 with a GPU provider, else 1,8'}; dry run {dry})")
    args = parser.parse_args(argv)
    mode = "cpu-dry-run" if args.cpu_dry_run else "gpu"
    settings = {key: getattr(args, key) if getattr(args, key) is not None else default
                for key, default in SETTINGS[mode].items()}
    if settings["warmup_steps"] < 1 or settings["steps"] < 1:
        parser.error("--steps and --warmup-steps must be at least 1")
    return args, {"mode": mode, **settings}


def main(argv: list[str] | None = None) -> int:
    started = STARTED if argv is None else time.perf_counter()  # called in-process (tests): from here
    args, settings = parse(argv)
    mode = settings["mode"]
    if mode == "gpu" and not torch.cuda.is_available():
        print("error: no CUDA device; run the same parts on the CPU with --cpu-dry-run", file=sys.stderr)
        return 2
    from zoo.runs import quiet_lightning

    quiet_lightning()
    warnings.filterwarnings("ignore", message=r".*`validation_step` but have no `val_dataloader`.*")  # on purpose
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    if settings["bench_batches"] is None:  # a CPU-only onnxruntime benches against eager on the CPU: keep it short
        import onnxruntime as ort

        gpu_ep = bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))
        settings["bench_batches"] = (1, 8, 64) if gpu_ep else (1, 8)
    patterns = [p.strip() for p in args.parts.split(",") if p.strip()]
    parts = [p for p in plan(settings, out) if any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    report = {"schema": SCHEMA, "created": now_iso(), "mode": mode, "argv": sys.argv[1:] if argv is None else argv,
              "settings": {k: v for k, v in settings.items() if k != "mode"}, "budget_s": settings["budget_s"],
              "environment": environment(), "parts": [], "seconds": 0.0}
    with zoo_home(None, prefix="zoo-gpu-check-"), tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        ctx = Ctx(device="cpu" if mode == "cpu-dry-run" else "cuda", tiny=mode == "cpu-dry-run",
                  steps=settings["steps"], warmup=settings["warmup_steps"], work=Path(work))
        for part in parts:
            elapsed = time.perf_counter() - started
            record = run_part(part, ctx, settings["budget_s"] - elapsed)
            report["parts"].append(record)
            report["seconds"] = round(time.perf_counter() - started, 1)
            write_report(out, report)
            print(f"[{report['seconds']:6.1f} s] {part.name}: {record['status']} ({record['seconds']:.1f} s) "
                  f"{describe(record)}", flush=True)
    print("\n" + summary(report), flush=True)
    return 1 if any(p["status"] == "failed" for p in report["parts"]) else 0


if __name__ == "__main__":
    sys.exit(main())
