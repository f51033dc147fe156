"""onnxruntime vs PyTorch eager on the same model, side by side in one process (zoo.export.bench).

    python benchmarks/onnx_vs_eager.py                        # timm resnet18, random init, 224 px, 1000 classes
    python benchmarks/onnx_vs_eager.py --run runs/kd_digits/<id> --run runs/kd_fashion_mnist/<id>
    python benchmarks/onnx_vs_eager.py --no-resnet18 --run ... --threads 1 --iters 300 --out bench.json

Each model is exported with the default profile (checked as `zoo export` checks
it) into a temporary folder, then both arms are timed interleaved at each batch
size with equal intra-op threads for torch and onnxruntime. Target on a CPU:
onnxruntime >= 1.5x eager throughput at batch 1. Prints one table per model;
--out writes every record as one JSON list.
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch

from zoo.archs import create
from zoo.export.bench import bench_folder, format_table
from zoo.export.classifier import export_any
from zoo.export.dispatch import export_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", default=[], help="a finished run folder (repeatable)")
    parser.add_argument("--no-resnet18", action="store_true", help="skip the random-init timm resnet18")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of both arms (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="write all records to this JSON file")
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    records = []
    with tempfile.TemporaryDirectory(prefix="onnx-vs-eager-") as tmp:
        targets = []
        if not args.no_resnet18:
            torch.manual_seed(0)
            model = create("resnet18", 1000, (3, 224, 224)).eval()
            targets.append(export_any(model, Path(tmp) / "resnet18", arch="resnet18", input_shape=(3, 224, 224),
                                      num_classes=1000, samples=8).folder)
        for i, run in enumerate(args.run):
            targets.append(export_run(run, Path(tmp) / f"run{i}", say=lambda _: None).folder)
        for folder in targets:
            record = bench_folder(folder, batches, args.warmup, args.iters, args.threads)
            records.append(record)
            print(format_table(record), end="\n\n", flush=True)
    if args.out:
        args.out.write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
