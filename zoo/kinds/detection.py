"""detection: images in, boxes and per-class scores out (DETR detectors on KITTI, COCO and the mini KITTI).

Judged by COCO-style mAP@[.5:.95] (with mAP@0.5 and per-class AP) of one detector over a whole split; the teacher's
outputs depend on the batch's ground truth (CLoCKDistill's GT queries), so nothing is cached; a teacher is trained
alone with its own set loss (``detr_alone``); ``zoo export`` writes a (boxes, scores) graph checked by mAP
(profile ``export/detector.yaml``).
"""

from zoo.errors import ConfigError
from zoo.export.detector import export_detector_run
from zoo.kinds import KINDS, Kind
from zoo.metrics.detection import evaluate_detector


def evaluate(datamodule, models, split: str, device: str = "cpu", role: str = "student",
             limit_batches: int | None = None, **context):
    if len(models) != 1:
        raise ConfigError(f"detection evaluates one model at a time, not an ensemble of {len(models)}",
                          "give detection tasks a single teacher.arch")
    return evaluate_detector(models[0], datamodule.eval_loader(split, limit_batches), datamodule.classes,
                             device=device, prefix=split)


KINDS.register("detection")(Kind(
    name="detection", headline="map", evaluate=evaluate, teacher_cache=False, alone_method="detr_alone",
    export=export_detector_run, export_profile="detector"))
