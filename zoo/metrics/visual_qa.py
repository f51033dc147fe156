"""Visual question answering by greedy generation: answer accuracy, POPE's yes/no metrics, the hallucination rate on
questions about absent objects, generation speed and the model's activated and total parameters.

Answers are compared after normalisation (lower case, punctuation and the articles a / an / the dropped, spaces
collapsed: VQA's exact-match rules, less its number words), so "a bag." matches "bag". Question groups are read from
the reference answers, which makes them hold for any short-answer data in LLaVA's format:

- POPE (Li et al., "Evaluating Object Hallucination in Large Vision-Language Models", 2023): the questions whose
  reference is "yes" or "no"; a prediction counts as "yes" when it starts with "yes". ``pope_acc``, ``pope_f1`` ("yes"
  the positive class) and ``pope_yes_ratio`` (the share answered "yes"; 0.5 on balanced questions is unbiased).
- Absent-object questions: the reference is "no" (is there an X? with X absent) or "nothing" (what is at an empty
  place?). ``hallucination`` is the share of them answered otherwise: every other answer asserts something that is
  not there.
- Present-object questions: all the others; ``acc_present`` is the accuracy on them.

``gen_tokens_per_s``: tokens decoded (stop tokens included) per second of greedy decoding with the KV cache, prefill
included, at the split's evaluation batch size on the evaluating device. ``params_active`` / ``params_total``: the
parameters one token passes through (a mixture of experts leaves some experts out) and all of them.
"""

import re
import time

import torch

ABSENT = ("no", "nothing")
ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = re.compile(r"[^\w\s]")


def normalise(answer: str) -> str:
    return " ".join(ARTICLES.sub(" ", PUNCTUATION.sub(" ", answer.lower())).split())


def score(predictions: list[str], references: list[str]) -> dict[str, float]:
    """The answer metrics of ``predictions`` against ``references`` (see the module docstring); a group with no
    question in the split has no metric."""
    pairs = [(normalise(p), normalise(r)) for p, r in zip(predictions, references, strict=True)]
    metrics = {"acc": sum(p == r for p, r in pairs) / max(1, len(pairs))}
    present = [(p, r) for p, r in pairs if r not in ABSENT]
    absent = [(p, r) for p, r in pairs if r in ABSENT]
    pope = [(p.startswith("yes"), r == "yes") for p, r in pairs if r in ("yes", "no")]
    if present:
        metrics["acc_present"] = sum(p == r for p, r in present) / len(present)
    if absent:
        metrics["hallucination"] = sum(p != r for p, r in absent) / len(absent)
    if pope:
        true_yes = sum(said and truth for said, truth in pope)
        said_yes = sum(said for said, _ in pope)
        truly_yes = sum(truth for _, truth in pope)
        metrics["pope_acc"] = sum(said == truth for said, truth in pope) / len(pope)
        metrics["pope_f1"] = 2 * true_yes / (said_yes + truly_yes) if said_yes + truly_yes else 0.0
        metrics["pope_yes_ratio"] = said_yes / len(pope)
    return metrics


def to_device(inputs: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in inputs.items()}


@torch.no_grad()
def evaluate_vqa(model, loader, tokenizer, max_new_tokens: int, device: str = "cpu", prefix: str = "test"
                 ) -> dict[str, float]:
    """``<prefix>/<metric>`` of ``model`` (a ``zoo.archs.vlm.VisionLanguageModel``) greedily answering the prompts
    of ``loader`` (``zoo.data.llava.PromptSet`` batches)."""
    was_training = model.training
    model.eval().to(device)
    predictions, references, decoded, seconds = [], [], 0, 0.0
    try:
        for batch in loader:
            started = time.perf_counter()
            answers, tokens = model.generate(to_device(batch["inputs"], device), max_new_tokens)
            seconds += time.perf_counter() - started
            decoded += tokens
            predictions += tokenizer.batch_decode(answers, skip_special_tokens=True)
            references += batch["answers"]
    finally:
        model.train(was_training)
    metrics = score(predictions, references)
    metrics["gen_tokens_per_s"] = decoded / seconds if seconds > 0 else 0.0
    metrics["params_active"] = float(model.active_parameters())
    metrics["params_total"] = float(sum(p.numel() for p in model.parameters()))
    return {f"{prefix}/{name}": float(value) for name, value in metrics.items()}
