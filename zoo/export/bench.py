"""PyTorch eager vs onnxruntime on the same model, side by side in one process.

    zoo bench run=RUN_DIR | model=EXPORT_DIR [batches=1,8,32] [warmup=10] [iters=100] [threads=N]

For each batch size both arms get the same random (already normalised) batch;
calls alternate between the arms (the first arm swaps every iteration) after
``warmup`` calls of each, so load and frequency changes of the machine hit both
arms alike. Reported per arm: latency p50/p95 of one call (host array in, host
array out, so a GPU arm includes its copies) and throughput (items/s: batch
size over the median latency, robust to a descheduled call; the mean-based
figure is in the JSON too), and the ratio onnxruntime/eager throughput (> 1:
onnxruntime is faster).

Fair by construction: torch and onnxruntime get the same number of intra-op
threads (``threads``, default torch's current setting) and onnxruntime one
inter-op thread; eager runs under ``torch.inference_mode`` for the whole timed
loop (its best case). On a GPU eager runs in the export's precision; on a CPU
eager stays fp32 (PyTorch's CPU half kernels are not a fair baseline), which the
record says. A run is exported into a temporary folder first (with the usual
checks); an export folder is benched as it is. The record (threads, load
average, providers, versions, hardware, every number) goes to
``bench-<time>.json`` in the run or export folder.
"""

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.atomic import atomic_write_text
from zoo.errors import ConfigError
from zoo.records import hardware, new_run_id, now_iso, package_versions

DEFAULT_BATCHES = (1, 8, 32)


def time_interleaved(arms: dict[str, Callable[[], Any]], warmup: int, iters: int) -> dict[str, list[float]]:
    """Seconds per call of each arm, calls alternating between arms, the starting arm rotating."""
    names = list(arms)
    for _ in range(warmup):
        for name in names:
            arms[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iters):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            arms[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def summarize(seconds: list[float], batch: int) -> dict[str, float]:
    """Latency percentiles and throughput. ``items_per_s`` is batch / median latency: on a shared machine one
    descheduled call can take 100x a normal one and would dominate a mean; the mean-based figure is kept too."""
    median = statistics.median(seconds)
    q = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50_ms": 1e3 * median, "p95_ms": 1e3 * q[94], "items_per_s": batch / median,
            "items_per_s_mean": batch * len(seconds) / sum(seconds)}


def bench_folder(folder: Path, batches: tuple[int, ...] = DEFAULT_BATCHES, warmup: int = 10, iters: int = 100,
                 threads: int | None = None, torch_model: nn.Module | None = None) -> dict[str, Any]:
    """Eager vs onnxruntime for an export folder; ``torch_model`` defaults to the one its card describes."""
    from zoo.export.runtime import GPU_PROVIDERS, OnnxClassifier
    from zoo.export.sources import load_export_folder, read_folder_card

    folder = Path(folder)
    card = read_folder_card(folder)
    if torch_model is None:
        torch_model, _ = load_export_folder(folder)
    before = torch.get_num_threads()
    threads = int(threads or before)
    torch.set_num_threads(threads)
    try:
        clf = OnnxClassifier(folder, threads=threads)
        # GPU eager only against a GPU provider: a CPU-only onnxruntime is compared with eager on the CPU.
        on_gpu = torch.cuda.is_available() and clf.provider in GPU_PROVIDERS
        device = torch.device("cuda" if on_gpu else "cpu")
        dtype = torch.float16 if on_gpu and clf.model.input_dtype == np.float16 else torch.float32
        model = torch_model.eval().to(device=device, dtype=dtype)
        rows = []
        rng = np.random.default_rng(0)
        for batch in batches:
            x = rng.standard_normal((batch, *clf.input_shape), dtype=np.float32)

            def eager(x=x):
                return model(torch.from_numpy(x).to(device=device, dtype=dtype)).float().cpu().numpy()

            def ort(x=x):
                return clf.run(x)

            with torch.inference_mode():
                seconds = time_interleaved({"eager": eager, "ort": ort}, warmup, iters)
                max_diff = float(np.abs(eager() - ort()).max())  # both arms did the same work
            row = {"batch": batch, "eager": summarize(seconds["eager"], batch), "ort": summarize(seconds["ort"], batch),
                   "max_abs_diff": max_diff}
            row["ratio_ort_over_eager"] = row["ort"]["items_per_s"] / row["eager"]["items_per_s"]
            rows.append(row)
    finally:
        torch.set_num_threads(before)
    return {"schema": 1, "created": now_iso(), "model": card.name, "arch": card.arch, "folder": str(folder.resolve()),
            "precision": str(clf.model.input_dtype.__name__), "eager_device": str(device), "eager_dtype": str(dtype),
            "ort_provider": clf.provider, "threads": {"torch_intra_op": threads, "ort_intra_op": threads,
                                                      "ort_inter_op": 1},
            "warmup": warmup, "iters": iters, "rows": rows, "load_average_1m": _load_average(),
            "versions": package_versions(), "hardware": hardware()}


def format_table(record: dict[str, Any]) -> str:
    lines = [f"{record['model']}: eager {record['eager_device']} {record['eager_dtype'].replace('torch.', '')} vs "
             f"onnxruntime {record['ort_provider']} ({record['precision']}), {record['threads']['torch_intra_op']} "
             f"intra-op thread(s) each, {record['iters']} interleaved calls after {record['warmup']} warm-up, "
             f"load avg {record['load_average_1m']}",
             f"{'batch':>5} {'eager p50 ms':>12} {'p95 ms':>8} {'items/s':>10} {'ort p50 ms':>11} {'p95 ms':>8} "
             f"{'items/s':>10} {'ort/eager':>9}"]
    for row in record["rows"]:
        e, o = row["eager"], row["ort"]
        lines.append(f"{row['batch']:>5} {e['p50_ms']:>12.3f} {e['p95_ms']:>8.3f} {e['items_per_s']:>10.0f} "
                     f"{o['p50_ms']:>11.3f} {o['p95_ms']:>8.3f} {o['items_per_s']:>10.0f} "
                     f"{row['ratio_ort_over_eager']:>8.2f}x")
    load, cores = record["load_average_1m"], record["hardware"].get("cpu_count")
    if load is not None and cores and load + record["threads"]["torch_intra_op"] > cores + 0.5:
        advice = ("; torch's intra-op threads slow down badly on oversubscribed cores: compare with threads=1"
                  if record["threads"]["torch_intra_op"] > 1 else "; expect noise")
        lines.append(f"note: load average {load} on {cores} cores: other work shares the CPU{advice}")
    return "\n".join(lines)


def bench(run: str | None = None, model: str | None = None, batches: list[int] | tuple[int, ...] | None = None,
          warmup: int = 10, iters: int = 100, threads: int | None = None, profile: str = "default",
          ) -> tuple[dict[str, Any], Path]:
    """``zoo bench run=RUN_DIR | model=EXPORT_DIR``: the bench record, written to bench-<time>.json beside the
    model, and its path. A run is exported (checked, into a temporary folder) first; only image classifiers have a
    bench so far."""
    from zoo.export.classifier import export_run
    from zoo.kinds import kind_of
    from zoo.runs import load_run

    if (run is None) == (model is None):
        raise ConfigError("zoo bench takes exactly one of run=RUN_DIR or model=EXPORT_DIR",
                          "e.g. zoo bench run=runs/kd_digits/<run-id>")
    batches = tuple(int(b) for b in (batches or DEFAULT_BATCHES))
    if not batches or min(batches) < 1 or warmup < 0 or iters < 2:
        raise ConfigError("batches must be positive, warmup >= 0 and iters >= 2")
    if run is not None:
        loaded = load_run(Path(run))
        if kind_of(loaded.datamodule).name != "image_classification":
            raise ConfigError(f"zoo bench measures image classifiers; run '{run}' is a {loaded.datamodule.kind} run",
                              "bench its export folder's runtime by hand, or wait for that kind's bench")
        with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
            exported = export_run(loaded, Path(tmp) / "onnx", profile, say=lambda _: None)
            record = bench_folder(exported.folder, batches, warmup, iters, threads)
        record["source"] = {"kind": "run", "run_dir": str(Path(run).resolve()), "profile": profile}
        destination = Path(run)
    else:
        record = bench_folder(Path(model), batches, warmup, iters, threads)
        record["source"] = {"kind": "export", "folder": str(Path(model).resolve())}
        destination = Path(model)
    path = destination / f"bench-{new_run_id()}.json"
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record, path


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
