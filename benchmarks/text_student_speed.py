"""How much faster the text student runs than its teacher on this CPU, side by side in one process.

Both models of a text task (default ``lelp_tweets``: all-MiniLM-L6-v2 + head against the bag of word pieces with
LELP's S·C-way head; ``ernie_tiny_tweets``: the same teacher against a 2-layer, 192-wide BERT) read the same
tokenized test tweets, eager PyTorch in eval mode, the same threads; the two are timed in alternation, several
rounds, and the median per model is kept, so a load spike hits both. Weights are random (speed does not depend on
them, and no stored teacher is needed). Reported: texts per second at the task's evaluation batch size over the
whole test split, and milliseconds per text at batch 1 over the first ``--single`` texts; the ratio is teacher time
over student time.

With ``--onnx`` both are exported to ONNX (the graph ``zoo export`` writes) and timed in onnxruntime on the CPU
instead, one session per model with the same thread count.

    python benchmarks/text_student_speed.py [--task lelp_tweets] [--onnx] [--threads N] [--rounds 3] [--out r.json]

"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from zoo.archs import create, student_arch_kwargs
from zoo.config import compose
from zoo.records import hardware, package_versions
from zoo.registry import DATASETS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="lelp_tweets")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=200, help="texts timed one at a time")
    parser.add_argument("--onnx", action="store_true", help="time onnxruntime sessions instead of eager PyTorch")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    return parser.parse_args()


def seconds(model, batches) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for inputs in batches:
            model(inputs)
    return time.perf_counter() - started


def onnx_runner(model, name: str, folder: Path, threads: int, datamodule):
    """``model`` exported as ``zoo export`` writes it and wrapped as a callable on input dicts (onnxruntime, CPU)."""
    import onnxruntime as ort

    from zoo.archs.text import load_tokenizer
    from zoo.export.profiles import load_profile
    from zoo.export.text_classifier import TokenClassifier
    from zoo.export.text_encoders import to_onnx
    from zoo.export.text_runtime import OUTPUT

    profile = load_profile("default")
    path = folder / f"{name}.onnx"
    tokenizer = load_tokenizer(datamodule.vocabulary)
    to_onnx(TokenClassifier(model, tokenizer, datamodule.max_length, name), path, OUTPUT, profile.opset,
            profile.exporter)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs):
        return session.run(None, {key: value.numpy() for key, value in inputs.items()})

    return run


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose(args.task, ["data.train_subset=100"])  # only the test split is read
    datamodule = DATASETS.get(cfg.data.name)(cfg.data, shuffle_seed=0)
    # a staged task names its teachers by role: the one of the last stage is the one the student replaces
    archs = {"teacher": cfg.teacher.arch if "arch" in cfg.teacher else cfg.teacher.roles[cfg.stages[-1].teacher].arch,
             "student": cfg.student.arch}
    models = {
        "teacher": create(archs["teacher"], datamodule.num_classes, ()).eval(),
        "student": create(cfg.student.arch, datamodule.num_classes, (), **student_arch_kwargs(cfg, datamodule)).eval(),
    }
    params = {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}
    if args.onnx:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="text_speed_"))
        threads = torch.get_num_threads()
        models = {name: onnx_runner(model, name, folder, threads, datamodule) for name, model in models.items()}
    batched = [batch["inputs"] for batch in datamodule.eval_loader("test")]
    texts = sum(len(inputs["input_ids"]) for inputs in batched)
    single = [{key: value[i:i + 1, :int(inputs["attention_mask"][i].sum())] for key, value in inputs.items()}
              for inputs in batched for i in range(len(inputs["input_ids"]))][:args.single]
    timings = {name: {"batched": [], "single": []} for name in models}
    for model in models.values():  # warm-up: first calls allocate
        seconds(model, batched[:1] + single[:5])
    for _ in range(args.rounds):
        for name, model in models.items():
            timings[name]["batched"].append(seconds(model, batched))
            timings[name]["single"].append(seconds(model, single))
    result = {"task": args.task, "runtime": "onnxruntime" if args.onnx else "eager", "texts": texts,
              "single_texts": len(single), "rounds": args.rounds,
              "threads": torch.get_num_threads(), "versions": package_versions(), "hardware": hardware()}
    for name in models:
        batched_s = statistics.median(timings[name]["batched"])
        single_s = statistics.median(timings[name]["single"])
        result[name] = {"arch": archs[name], "params": params[name],
                        "texts_per_s": texts / batched_s, "ms_per_text_batch1": 1000 * single_s / len(single)}
    for key in ("texts_per_s", "ms_per_text_batch1"):
        teacher, student = result["teacher"][key], result["student"][key]
        result[f"ratio_{key}"] = student / teacher if key == "texts_per_s" else teacher / student
    print(f"{args.task} ({result['runtime']}): {texts} test texts (batch {cfg.data.eval_batch_size}), "
          f"{len(single)} at batch 1; "
          f"{args.rounds} rounds, median; torch threads {torch.get_num_threads()}")
    for name in models:
        row = result[name]
        print(f"{name:<8} {row['arch']:<24} {row['params']:>12,} params {row['texts_per_s']:>10.0f} texts/s "
              f"{row['ms_per_text_batch1']:>8.3f} ms/text at batch 1")
    print(f"student faster by {result['ratio_texts_per_s']:.1f}x batched, {result['ratio_ms_per_text_batch1']:.1f}x "
          f"at batch 1")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.onnx:
        import shutil

        shutil.rmtree(folder)  # the two graphs were only for timing


if __name__ == "__main__":
    main()
