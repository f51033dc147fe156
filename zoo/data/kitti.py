"""KITTI 2D object detection in its own on-disk layout.

    <root>/training/image_2/<id>.png     left colour camera, about 1242 x 375
    <root>/training/label_2/<id>.txt     one object per line, 15 fields (16 in result files)
    <root>/ImageSets/train.txt, val.txt  optional: one frame id per line (the common 3,712 / 3,769 split)

A label line is ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y
[score]``; unknown 3-D values are written as -1 / -1000 / -10. Every line is
checked: a wrong field count, a non-numeric value, an unknown type or an
inverted box raises ``DataError`` naming ``file:line``, since a silently skipped
line would quietly change what the detector is trained and scored on.

Classes: ``classes`` (default Car, Pedestrian, Cyclist, the usual three) become
labels 0..K-1. The other types go through ``type_map``: a class name (e.g.
``Van: Car``) trains them as that class, ``ignore`` keeps their boxes as ignore
regions, ``drop`` forgets them. DontCare boxes are always ignore regions.

KITTI's test labels are not public, so the 7,481 labelled frames are split into
train and val; ``test`` is the val split. The split comes from ImageSets files
when they exist, else from a seeded shuffle (``split_seed``, ``val_fraction``);
``split_info()`` lists the frame ids either way so a run record pins them.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from zoo.data.detection import DetectionDataModule, DetectionRecord, empty_boxes
from zoo.errors import ConfigError, DataError
from zoo.registry import DATASETS

KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
IGNORE, DROP = "ignore", "drop"
MISSING_HINT = ("put the KITTI 2D object data (left colour images + training labels) in one folder holding "
                "training/image_2 and training/label_2 and pass data.root=/path/to/kitti; "
                "to try the pipeline without it, use data=kitti_mini")


@dataclass(frozen=True)
class KittiObject:
    """One label line. ``occluded``: 0 visible .. 3 unknown; ``score`` only in result files."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]        # x1, y1, x2, y2 in pixels
    dimensions: tuple[float, float, float]         # height, width, length in metres
    location: tuple[float, float, float]           # x, y, z in camera coordinates, metres
    rotation_y: float
    score: float | None = None

    def to_line(self) -> str:
        """The line as KITTI writes it (two decimals), so a parsed file can be written back."""
        numbers = [self.truncated, self.occluded, self.alpha, *self.bbox, *self.dimensions, *self.location,
                   self.rotation_y] + ([self.score] if self.score is not None else [])
        return " ".join([self.type] + [str(v) if isinstance(v, int) else f"{v:.2f}" for v in numbers])


def parse_kitti_line(line: str, where: str) -> KittiObject:
    """One label line -> KittiObject; ``where`` ("file:line") prefixes every error."""
    fields = line.split()
    if len(fields) not in (15, 16):
        raise DataError(f"{where}: expected 15 fields (16 with a score), got {len(fields)}")
    kind = fields[0]
    if kind not in KITTI_TYPES:
        raise DataError(f"{where}: unknown object type '{kind}'; KITTI types are {', '.join(KITTI_TYPES)}")
    values = []
    for position, text in enumerate(fields[1:], start=2):
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{where}: field {position} is '{text}', not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: field {position} is '{text}', not a finite number")
        values.append(value)
    occluded = values[1]
    if occluded != int(occluded) or int(occluded) not in (-1, 0, 1, 2, 3):
        raise DataError(f"{where}: occluded must be -1, 0, 1, 2 or 3, got '{fields[2]}'")
    x1, y1, x2, y2 = values[3:7]
    if x2 < x1:
        raise DataError(f"{where}: box has x2 < x1 ({x2} < {x1})")
    if y2 < y1:
        raise DataError(f"{where}: box has y2 < y1 ({y2} < {y1})")
    return KittiObject(type=kind, truncated=values[0], occluded=int(occluded), alpha=values[2],
                       bbox=(x1, y1, x2, y2), dimensions=tuple(values[7:10]), location=tuple(values[10:13]),
                       rotation_y=values[13], score=values[14] if len(values) == 15 else None)


def read_kitti_labels(path: Path) -> list[KittiObject]:
    """Every object of one label file; an empty file (a frame without objects) is valid."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read label file ({err})") from err
    return [parse_kitti_line(line, f"{path}:{number}")
            for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def resolve_type_map(classes: list[str], type_map: dict[str, str]) -> dict[str, int | str]:
    """Every KITTI type -> a class index, ``ignore`` or ``drop``; types not listed anywhere are ignored."""
    if not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"data.classes must be distinct KITTI types, got {classes}")
    for name in classes:
        if name not in KITTI_TYPES or name == "DontCare":
            raise ConfigError(f"data.classes: '{name}' is not a KITTI object type",
                              f"choose from {', '.join(KITTI_TYPES[:-1])}")
    mapping: dict[str, int | str] = {kind: IGNORE for kind in KITTI_TYPES}
    mapping.update({name: index for index, name in enumerate(classes)})
    for kind, target in type_map.items():
        if kind not in KITTI_TYPES or kind == "DontCare" or kind in classes:
            raise ConfigError(f"data.type_map: '{kind}' cannot be mapped",
                              "keys are KITTI types that are neither a class nor DontCare")
        if target in classes:
            mapping[kind] = classes.index(target)
        elif target in (IGNORE, DROP):
            mapping[kind] = target
        else:
            raise ConfigError(f"data.type_map.{kind}: '{target}' is neither a class nor ignore/drop",
                              f"use one of {', '.join(classes)}, {IGNORE}, {DROP}")
    return mapping


def kitti_record(image: Path, frame_id: str, objects: list[KittiObject], mapping: dict[str, int | str]
                 ) -> DetectionRecord:
    """A frame's objects sorted into targets and ignore regions (class-agnostic, label -1)."""
    boxes, labels, ignore = [], [], []
    for obj in objects:
        target = mapping[obj.type]
        if isinstance(target, int):
            boxes.append(obj.bbox)
            labels.append(target)
        elif target == IGNORE:
            ignore.append(obj.bbox)
    return DetectionRecord(
        image=image, image_id=frame_id,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4) if boxes else empty_boxes(),
        labels=np.asarray(labels, dtype=np.int64),
        ignore_boxes=np.asarray(ignore, dtype=np.float32).reshape(-1, 4) if ignore else empty_boxes(),
        ignore_labels=np.full(len(ignore), -1, dtype=np.int64))


def read_image_set(path: Path) -> list[str]:
    try:
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read split file ({err})") from err
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: lists a frame id twice")
    return ids


def kitti_split(root: Path, frame_ids: list[str], image_sets: str | None, split_seed: int,
                val_fraction: float) -> tuple[dict[str, list[str]], str]:
    """(train/val frame ids, where the split came from): ImageSets files if present, else a seeded shuffle."""
    folder = root / image_sets if image_sets else None
    if folder is not None and ((folder / "train.txt").is_file() or (folder / "val.txt").is_file()):
        for name in ("train", "val"):
            if not (folder / f"{name}.txt").is_file():
                raise DataError(f"{folder}: has only one of train.txt and val.txt",
                                "add the other, or set data.image_sets=null for a seeded split")
        split = {name: read_image_set(folder / f"{name}.txt") for name in ("train", "val")}
        if set(split["train"]) & set(split["val"]):
            raise DataError(f"{folder}: train.txt and val.txt share frame ids")
        known = set(frame_ids)
        for name, ids in split.items():
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise DataError(f"{folder / (name + '.txt')}: {len(unknown)} frame id(s) without a label file "
                                f"in training/label_2, e.g. '{unknown[0]}'")
        return split, f"{image_sets}/train.txt+val.txt"
    if not 0 < val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    order = np.random.default_rng(split_seed).permutation(len(frame_ids))
    n_val = max(1, round(len(frame_ids) * val_fraction))
    pick = lambda idx: [frame_ids[i] for i in sorted(idx)]
    return {"train": pick(order[n_val:]), "val": pick(order[:n_val])}, f"seeded(split_seed={split_seed})"


def read_kitti(root: Path, classes: list[str], type_map: dict[str, str], image_sets: str | None = "ImageSets",
               split_seed: int = 0, val_fraction: float = 0.5) -> tuple[dict[str, list[DetectionRecord]], str]:
    """A KITTI folder -> records per split and a description of where the split came from."""
    images, labels = root / "training" / "image_2", root / "training" / "label_2"
    if not images.is_dir() or not labels.is_dir():
        raise DataError(f"KITTI folder '{root}' lacks training/image_2 or training/label_2", MISSING_HINT)
    mapping = resolve_type_map(classes, type_map)
    frame_ids = sorted(p.stem for p in labels.glob("*.txt"))
    if not frame_ids:
        raise DataError(f"{labels}: no label files (<id>.txt)", MISSING_HINT)
    split, source = kitti_split(root, frame_ids, image_sets, split_seed, val_fraction)
    present = {p.name for p in images.iterdir()}
    records = {}
    for name, ids in split.items():
        missing = [i for i in ids if f"{i}.png" not in present]
        if missing:
            raise DataError(f"{images}: {len(missing)} labelled frame(s) have no image, e.g. '{missing[0]}.png'")
        records[name] = [kitti_record(images / f"{i}.png", i, read_kitti_labels(labels / f"{i}.txt"), mapping)
                         for i in ids]
    return records, source


def plain(value: Any) -> Any:
    """A config node as plain Python (lists, dicts); other values unchanged."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


@DATASETS.register("kitti")
class KittiDataModule(DetectionDataModule):
    name = "kitti"

    def __init__(self, cfg, shuffle_seed: int = 0, root: Path | None = None):
        super().__init__(cfg, shuffle_seed)
        root = root or (Path(cfg.root).expanduser() if cfg.root else None)
        if root is None or not root.is_dir():
            raise DataError(f"KITTI folder '{root}' not found (expected training/image_2 and training/label_2 in it)"
                            if root else "no KITTI folder given (data.root is null)", MISSING_HINT)
        classes = list(plain(cfg.classes))
        records, source = read_kitti(root, classes, dict(plain(cfg.type_map) or {}), cfg.image_sets,
                                     int(cfg.split_seed), float(cfg.val_fraction))
        self.root = root
        self.setup_records(classes, records, source)
