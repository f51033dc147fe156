"""COCO-format object detection: an image folder plus an ``instances_*.json`` per split.

The json holds ``images`` (id, file_name), ``annotations`` (image_id,
category_id, bbox = [x, y, width, height] in pixels, iscrowd) and ``categories``
(id, name). Category ids (COCO's run 1..90 with gaps) become contiguous labels
0..K-1 in id order, and train and val must list the same categories, else the
labels would mean different things in the two splits. ``iscrowd`` annotations
are ignore regions of their class (COCO's evaluation does the same), never
training targets. Missing keys, malformed boxes and unknown ids raise
``DataError`` naming the file and the entry; images without annotations are kept
(DETR learns "no object" from them too). ``test`` is the val split: COCO's
test-dev is scored on the evaluation server.
"""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.detection import DetectionDataModule, DetectionRecord, empty_boxes
from zoo.errors import DataError
from zoo.registry import DATASETS


def _field(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise DataError(f"{where} lacks '{key}'")
    return entry[key]


def load_coco_json(path: Path) -> dict[str, Any]:
    """The json with its three top-level lists checked."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"COCO annotation file '{path}' not found",
                        "set data.root and data.train_annotations / data.val_annotations") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or non-list '{key}'")
    return data


def coco_categories(data: dict[str, Any], path: Path) -> list[tuple[int, str]]:
    """(category id, name) sorted by id: the order that defines labels 0..K-1."""
    categories = []
    for i, cat in enumerate(data["categories"]):
        where = f"{path}: categories[{i}]"
        cat_id = _field(cat, "id", where)
        if not isinstance(cat_id, int) or isinstance(cat_id, bool):
            raise DataError(f"{where}: id must be an integer, got {cat_id!r}")
        categories.append((cat_id, str(_field(cat, "name", where))))
    if len({c for c, _ in categories}) != len(categories):
        raise DataError(f"{path}: two categories share an id")
    if not categories:
        raise DataError(f"{path}: no categories")
    return sorted(categories)


def read_coco(path: Path, images_dir: Path) -> tuple[list[tuple[int, str]], list[DetectionRecord]]:
    """A COCO json + its image folder -> (categories, one record per image in json order)."""
    data = load_coco_json(path)
    categories = coco_categories(data, path)
    label_of = {cat_id: label for label, (cat_id, _) in enumerate(categories)}
    images: dict[int, dict[str, Any]] = {}
    for i, image in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        image_id, file_name = _field(image, "id", where), _field(image, "file_name", where)
        if not isinstance(image_id, int | str) or isinstance(image_id, bool):
            raise DataError(f"{where}: id must be an integer or a string, got {image_id!r}")
        if image_id in images:
            raise DataError(f"{where}: image id {image_id} appears twice")
        images[image_id] = {"file": str(file_name), "boxes": [], "labels": [], "crowd": [], "crowd_labels": []}
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        image_id, category_id = _field(ann, "image_id", where), _field(ann, "category_id", where)
        bbox = _field(ann, "bbox", where)
        if image_id not in images:
            raise DataError(f"{where}: image_id {image_id} is not in images")
        if category_id not in label_of:
            raise DataError(f"{where}: category_id {category_id} is not in categories")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):
            raise DataError(f"{where}: bbox must be 4 numbers [x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0 or not np.isfinite([x, y, w, h]).all():
            raise DataError(f"{where}: bbox {bbox} has a negative or non-finite size")
        entry = images[image_id]
        crowd = bool(ann.get("iscrowd", 0))
        entry["crowd" if crowd else "boxes"].append((x, y, x + w, y + h))
        entry["crowd_labels" if crowd else "labels"].append(label_of[category_id])

    present = set(os.listdir(images_dir)) if images_dir.is_dir() else set()
    records = []
    for image_id, entry in images.items():
        file = images_dir / entry["file"]
        if entry["file"] not in present and not file.is_file():
            raise DataError(f"{path}: image '{entry['file']}' (id {image_id}) not found in '{images_dir}'",
                            "set data.root and data.train_images / data.val_images to the image folders")
        as_boxes = lambda rows: np.asarray(rows, dtype=np.float32).reshape(-1, 4) if rows else empty_boxes()
        records.append(DetectionRecord(
            image=file, image_id=str(image_id), boxes=as_boxes(entry["boxes"]),
            labels=np.asarray(entry["labels"], dtype=np.int64), ignore_boxes=as_boxes(entry["crowd"]),
            ignore_labels=np.asarray(entry["crowd_labels"], dtype=np.int64)))
    return categories, records


@DATASETS.register("coco_detection")
class CocoDetectionDataModule(DetectionDataModule):
    name = "coco_detection"

    def __init__(self, cfg, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed)
        root = Path(cfg.root).expanduser() if cfg.root else None
        if root is None or not root.is_dir():
            raise DataError(f"COCO folder '{root}' not found" if root else "no COCO folder given (data.root is null)",
                            "pass data.root=/path/to/coco holding train2017/, val2017/ and annotations/")
        train_cats, train = read_coco(root / cfg.train_annotations, root / cfg.train_images)
        val_cats, val = read_coco(root / cfg.val_annotations, root / cfg.val_images)
        if train_cats != val_cats:
            raise DataError(f"{root / cfg.val_annotations}: categories differ from {root / cfg.train_annotations}")
        self.root = root
        self.category_ids = [cat_id for cat_id, _ in train_cats]  # label k is COCO category category_ids[k]
        self.setup_records([name for _, name in train_cats], {"train": train, "val": val},
                           f"{cfg.train_annotations}+{cfg.val_annotations}")
