"""image_classification: images in, class logits out (digits, Fashion-MNIST, ImageNet folders).

Judged by top-1 accuracy (and cross-entropy) over a whole split, of one model or of an ensemble (mean of
softmaxes); the inputs are fixed per sample, so teacher outputs may be cached; a teacher is trained alone with
``ce``; ``zoo export`` writes a logits graph checked against PyTorch (profile ``export/default.yaml``).
"""

from zoo.export.classifier import export_run
from zoo.kinds import KINDS, Kind
from zoo.metrics.classification import evaluate_classifier


def evaluate(datamodule, models, split: str, device: str = "cpu", role: str = "student",
             limit_batches: int | None = None, **context):
    return evaluate_classifier(models, datamodule.eval_loader(split, limit_batches), device=device, prefix=split)


KINDS.register("image_classification")(Kind(
    name="image_classification", headline="acc", evaluate=evaluate, teacher_cache=True, alone_method="ce",
    export=export_run, export_profile="default"))
