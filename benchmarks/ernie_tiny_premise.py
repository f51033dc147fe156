"""ERNIE-Tiny's premise on a task: does fine-tuning move the teacher's latent states, on general text as on task
text? GED (general-enhanced distillation) only differs from GD if the fine-tuned teacher's hidden states and
attention on *general* text differ from the pretrained teacher's; if fine-tuning left them where they were, GED is
GD again and the method has nothing to add.

For the task's two teacher roles (``pretrained``, ``finetuned``; the fine-tuned one must be stored already: run the
task once), on ``--samples`` sequences of the general text and of the task's training texts, per teacher layer the
stages distil from (the uniform map of the task's student): the relative change of the hidden states,
``Σ (H_ft − H_pre)² / Σ H_pre²`` over real tokens, and the mean KL(pretrained ‖ fine-tuned) of the head-averaged
attention of each real query. Reported beside it: the fine-tuned teacher's test metrics by the task kind's own
evaluation (accuracy, macro-F1; records keep the ones stored when it was trained) and the same change between two
*pretrained* teachers' runs (0: the measure's floor).

    python benchmarks/ernie_tiny_premise.py [--task ernie_tiny_tweets] [--samples 512] [--out premise.json]
"""

import argparse
import json
from pathlib import Path

import torch

from zoo.archs import create, student_arch_kwargs
from zoo.config import compose
from zoo.evaluation import evaluate
from zoo.methods.ernie_tiny import BertStates, attention_probs_kl, uniform_layer_map
from zoo.records import hardware, package_versions
from zoo.staged import StagedRun


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="ernie_tiny_tweets")
    parser.add_argument("--samples", type=int, default=512, help="sequences of each text, general and task")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    return parser.parse_args()


def batches(datamodule, samples: int, batch_size: int = 64):
    """The first ``samples`` training sequences, in order (no shuffling), as input dicts."""
    dataset = datamodule.splits["train"]
    for start in range(0, min(samples, len(dataset)), batch_size):
        yield dataset.__getitems__(list(range(start, min(start + batch_size, samples, len(dataset)))))["inputs"]


@torch.no_grad()
def change(pretrained: BertStates, finetuned: BertStates, layers: list[int], inputs_list) -> dict[str, float]:
    """Relative hidden-state change and attention KL between the two teachers, per layer, over the real tokens."""
    sums = {n: [0.0, 0.0, 0.0, 0] for n in layers}  # squared difference, squared norm, KL sum, real queries
    for inputs in inputs_list:
        mask = inputs["attention_mask"]
        real = mask.unsqueeze(-1).float()
        hidden_pre, _ = pretrained.forward(inputs)
        hidden_ft, _ = finetuned.forward(inputs)
        for n in layers:
            sums[n][0] += float((((hidden_ft[n] - hidden_pre[n]) ** 2) * real).sum())
            sums[n][1] += float(((hidden_pre[n] ** 2) * real).sum())
            queries = int(mask.sum())
            # attention_probs_kl(student, teacher) = KL(teacher ‖ student): here KL(pretrained ‖ fine-tuned)
            sums[n][2] += float(attention_probs_kl(finetuned.scores(n), pretrained.scores(n), mask)) * queries
            sums[n][3] += queries
    return {f"layer_{n}": {"hidden_relative_change": s[0] / s[1], "attention_kl": s[2] / s[3]}
            for n, s in sums.items()}


def main() -> None:
    args = parse_args()
    cfg = compose(args.task)
    run = StagedRun(cfg, say=lambda *_: None)
    (pre_models, _, _), (ft_models, _, _) = run.teachers("pretrained"), run.teachers("finetuned")
    pretrained, finetuned = BertStates(pre_models[0].eval(), "teacher"), BertStates(ft_models[0].eval(), "teacher")
    student = create(cfg.student.arch, run.task_data.num_classes, (), **student_arch_kwargs(cfg, run.task_data))
    layers = uniform_layer_map(BertStates(student, "student").depth, pretrained.depth)
    for states in (pretrained, finetuned):
        states.watch(layers)
    general = run.data("general")
    ft_metrics = evaluate(run.task_data, [ft_models[0]], "test")  # with today's metrics (macro-F1 included)
    result = {"task": args.task, "samples": args.samples, "layers": layers, "finetuned_teacher": ft_metrics,
              "general": change(pretrained, finetuned, layers, batches(general, args.samples)),
              "task_text": change(pretrained, finetuned, layers, batches(run.task_data, args.samples)),
              "floor": change(pretrained, pretrained, layers, batches(general, min(args.samples, 128))),
              "versions": package_versions(), "hardware": hardware()}
    print(f"{args.task}: fine-tuned teacher {ft_metrics}; {args.samples} sequences of each text; layers {layers}")
    print(f"{'text':<10} {'layer':<8} {'hidden Δ (relative)':>20} {'attention KL':>14}")
    for text in ("general", "task_text", "floor"):
        for layer, row in result[text].items():
            print(f"{text:<10} {layer:<8} {row['hidden_relative_change']:>20.4f} {row['attention_kl']:>14.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
