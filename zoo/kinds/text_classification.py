"""text_classification: texts in (token ids and attention mask, ``zoo.data.labelled_text``), class logits out.

Judged by top-1 accuracy (the headline), macro-F1 (the mean of the per-class F1: text sets are often unbalanced) and
cross-entropy over a whole split of one model or an ensemble; the token ids of a sample never change, so teacher
outputs may be cached; a teacher is trained alone with ``ce``; ``zoo export`` writes a logits graph over token ids
with the tokenizer files beside it, checked against PyTorch on the test split (``zoo.export.text_classifier``; no
profiles).
"""

from zoo.export.text_classifier import export_text_run
from zoo.kinds import KINDS, Kind
from zoo.metrics.classification import evaluate_classifier


def evaluate(datamodule, models, split: str, device: str = "cpu", role: str = "student",
             limit_batches: int | None = None, **context):
    return evaluate_classifier(models, datamodule.eval_loader(split, limit_batches), device=device, prefix=split,
                               macro_f1=True)


KINDS.register("text_classification")(Kind(
    name="text_classification", headline="acc", evaluate=evaluate, teacher_cache=True, alone_method="ce",
    export=export_text_run))
