"""``data=kitti_mini``: a small KITTI, generated once, on disk in the real KITTI layout.

It exists so the whole detection path (the KITTI parser, type mapping, DontCare
handling, the split files, resizing and padding) runs on a CPU in minutes without
the 12 GB download. The module writes ordinary KITTI files and then reads them
with the same reader as ``data=kitti``; nothing is served from memory.

What a frame is made of (default 96 x 288 px, about KITTI's 1:3.3 aspect):

* Background: a random crop, at KITTI's aspect and 40-100 % of the photo's width,
  of one of 15 real photos bundled with scikit-image (astronaut, brick, camera,
  chelsea, clock, coffee, coins, grass, gravel, hubble_deep_field,
  immunohistochemistry, moon, page, rocket, stereo_motorcycle left view),
  resized to the canvas and dimmed to 75 % so that objects stand out.
* Objects: real Fashion-MNIST items (``objects: fashion_mnist``; or sklearn's 8x8
  digits with ``objects: digits``), cut to the tight box of their non-black pixels,
  scaled to 30-80 % of the frame height (aspect kept within +-15 %, width at most
  60 % of the frame), tinted with a random colour and alpha-blended by their
  brightness. Car = Sneaker (digit 0), Pedestrian = Trouser (1), Cyclist = Bag (7);
  distractors Van = Sandal (8) and Misc = Pullover (4). Training frames use items
  from Fashion-MNIST's training file, validation frames items from its test file
  (digits: every fifth digit is kept for validation); the 15 background photos are
  shared by both splits, only the crops differ.
  1..``max_objects`` class objects per frame; with probability 0.3 one distractor.
  A new box may overlap an earlier one by IoU <= 0.3; objects may stick out of
  the left or right edge by up to a quarter of their width.
* The label box is exactly the pasted item's box, clipped to the frame.
  ``truncated`` is the fraction of the box outside the frame, ``occluded`` is 0/1/2
  for < 10 % / < 50 % / more of the box covered by objects pasted later. The 3-D
  fields are fake but valid: class-typical dimensions, a location from a pinhole
  camera (KITTI's focal length scaled to the frame width) standing the object on
  its box's bottom edge, a random rotation_y and the matching alpha.
* DontCare: with probability 0.3 a frame gets a region of 24-64 x 10-20 px holding
  1-3 tiny (5-10 px) items of any type, labelled by one DontCare line (-1 / -10 /
  -1000 for the unknown fields), as KITTI marks far, unlabelled objects.

Frames 000000.. are training (``ImageSets/train.txt``), the following ones
validation (``val.txt``). Each frame draws from its own generator seeded with
(``generator_seed``, split, frame), so the output is byte-identical on every run.
Generation writes a temporary sibling folder and renames it into place; its
``MANIFEST.json`` (generator, version, parameters, sha256 of every file) lets a
later run tell a complete folder from a partial, corrupt or outdated one (which it
regenerates) and from a folder that is not its own (which it refuses to touch).
"""

import functools
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import atomic_folder
from zoo.data.kitti import KittiDataModule, KittiObject
from zoo.errors import ConfigError, DataError
from zoo.paths import zoo_home
from zoo.registry import DATASETS

GENERATOR, VERSION = "zoo.data.kitti_mini", 1
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
          "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "stereo_motorcycle")
# Fashion-MNIST labels: 0 T-shirt 1 Trouser 2 Pullover 3 Dress 4 Coat 5 Sandal 6 Shirt 7 Sneaker 8 Bag 9 Ankle boot
ITEM_CLASSES = {"fashion_mnist": {"Car": 7, "Pedestrian": 1, "Cyclist": 8, "Van": 5, "Misc": 2},
                "digits": {"Car": 0, "Pedestrian": 1, "Cyclist": 7, "Van": 8, "Misc": 4}}
CLASSES, DISTRACTORS = ("Car", "Pedestrian", "Cyclist"), ("Van", "Misc")
DIMENSIONS = {"Car": (1.52, 1.63, 3.88), "Pedestrian": (1.76, 0.66, 0.84), "Cyclist": (1.74, 0.60, 1.76),
              "Van": (2.21, 1.90, 5.08), "Misc": (1.91, 1.51, 3.58)}  # h, w, l in metres, KITTI class means
KITTI_FOCAL, KITTI_WIDTH = 721.5377, 1242
MAX_IOU, DISTRACTOR_P, DONTCARE_P, BACKGROUND_GAIN = 0.3, 0.3, 0.3, 0.75


# ---------------------------------------------------------------- sources


@functools.cache  # 15 decoded photos (~12 MB), loaded once per process
def load_photos() -> tuple[np.ndarray, ...]:
    from skimage import data

    photos = []
    for name in PHOTOS:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
        photos.append(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])
    return tuple(photos)


def load_items(objects: str, objects_root: str | None) -> dict[str, dict[str, np.ndarray]]:
    """split -> KITTI type -> uint8 item images [N, h, w] (0 = background)."""
    if objects == "fashion_mnist":
        from zoo.data.fashion_mnist import read_splits

        read = read_splits(objects_root, "apt-get install dataset-fashion-mnist, set data.objects_root=<folder>, or "
                           "use data.objects=digits", whose=" (the kitti_mini objects)")
        arrays = {"train": read["train"], "val": read["test"]}
    elif objects == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = (digits.images * (255 / 16)).round().astype(np.uint8)
        val = np.arange(len(images)) % 5 == 0
        arrays = {"train": (images[~val], digits.target[~val]), "val": (images[val], digits.target[val])}
    else:
        raise ConfigError(f"data.objects must be fashion_mnist or digits, got '{objects}'")
    return {split: {kind: images[labels == cls] for kind, cls in ITEM_CLASSES[objects].items()}
            for split, (images, labels) in arrays.items()}


def tight_crop(item: np.ndarray) -> np.ndarray:
    """The item cut to the box of its non-black pixels, so the label box hugs the visible object."""
    rows, cols = np.nonzero(item > 16)
    if len(rows) == 0:
        return item
    return item[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]


# ---------------------------------------------------------------- one frame


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def paste(canvas: np.ndarray, item: np.ndarray, box: tuple[int, int, int, int], tint: np.ndarray) -> None:
    """Alpha-blend ``item`` (tinted, alpha from its brightness) into ``box``; parts outside the frame are cut."""
    from PIL import Image

    x1, y1, x2, y2 = box
    value = np.asarray(Image.fromarray(item).resize((x2 - x1, y2 - y1), Image.BILINEAR), dtype=np.float32) / 255
    alpha = np.clip(value * 4, 0, 1)[..., None]  # all but the darkest item pixels opaque
    colour = tint * (0.35 + 0.65 * value[..., None])
    height, width = canvas.shape[:2]
    cx1, cx2, cy1, cy2 = max(x1, 0), min(x2, width), max(y1, 0), min(y2, height)
    region = canvas[cy1:cy2, cx1:cx2]
    a = alpha[cy1 - y1: cy2 - y1, cx1 - x1: cx2 - x1]
    region[:] = a * colour[cy1 - y1: cy2 - y1, cx1 - x1: cx2 - x1] + (1 - a) * region


def place(rng: np.random.Generator, item: np.ndarray, height: int, width: int, taken: list) -> tuple | None:
    """A box for ``item`` at a random scale and position overlapping earlier boxes by IoU <= MAX_IOU."""
    aspect = item.shape[1] / item.shape[0] * rng.uniform(0.85, 1.15)
    for _ in range(20):
        h = rng.uniform(0.3, 0.8) * height
        w = min(h * aspect, 0.6 * width)
        h = w / aspect
        bw, bh = max(4, round(w)), max(8, round(h))
        x1 = int(rng.integers(-(bw // 4), width - bw + bw // 4 + 1))
        y1 = int(rng.integers(0, height - bh + 1))
        box = (x1, y1, x1 + bw, y1 + bh)
        clipped = (max(x1, 0), y1, min(x1 + bw, width), y1 + bh)
        if all(iou(clipped, other) <= MAX_IOU for other in taken):
            return box
    return None


def fake_3d(rng: np.random.Generator, kind: str, box: tuple, height: int, width: int) -> dict[str, Any]:
    """Plausible KITTI 3-D fields from a pinhole camera: depth from the class height and the box height."""
    focal = KITTI_FOCAL * width / KITTI_WIDTH
    dims = DIMENSIONS[kind]
    z = focal * dims[0] / (box[3] - box[1])
    x = ((box[0] + box[2]) / 2 - width / 2) * z / focal
    y = (box[3] - height / 2) * z / focal
    rotation_y = rng.uniform(-math.pi, math.pi)
    alpha = (rotation_y - math.atan2(x, z) + math.pi) % (2 * math.pi) - math.pi
    return {"dimensions": dims, "location": (x, y, z), "rotation_y": rotation_y, "alpha": alpha}


def render_frame(rng: np.random.Generator, photos: tuple[np.ndarray, ...], items: dict[str, np.ndarray],
                 height: int, width: int, max_objects: int) -> tuple[np.ndarray, list[KittiObject]]:
    """One frame: a photo crop, DontCare clutter, then class objects and distractors; and its labels."""
    from PIL import Image

    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    crop_w = rng.uniform(0.4, 1.0) * min(pw, ph * width / height)
    crop_h = crop_w * height / width
    x0, y0 = rng.uniform(0, pw - crop_w), rng.uniform(0, ph - crop_h)
    background = Image.fromarray(photo).resize((width, height), Image.BILINEAR, box=(x0, y0, x0 + crop_w, y0 + crop_h))
    canvas = np.asarray(background, dtype=np.float32) / 255 * BACKGROUND_GAIN
    pick = lambda kind: tight_crop(items[kind][int(rng.integers(len(items[kind])))])
    taken: list[tuple] = []

    dontcare = []
    if rng.random() < DONTCARE_P:
        rw, rh = int(rng.integers(24, 65)), int(rng.integers(10, 21))
        region = (int(rng.integers(0, width - rw + 1)), int(rng.integers(0, height - rh + 1)))
        region = (*region, region[0] + rw, region[1] + rh)
        dontcare.append(region)
        taken.append(region)
        for _ in range(int(rng.integers(1, 4))):
            item = pick(str(rng.choice(CLASSES + DISTRACTORS)))
            bh = int(rng.integers(5, 11))
            bw = max(3, min(rw, round(bh * item.shape[1] / item.shape[0])))
            bx, by = region[0] + int(rng.integers(0, rw - bw + 1)), region[1] + int(rng.integers(0, rh - bh + 1))
            paste(canvas, item, (bx, by, bx + bw, by + bh), rng.uniform(0.55, 1.0, 3))

    kinds = [str(rng.choice(CLASSES)) for _ in range(int(rng.integers(1, max_objects + 1)))]
    if rng.random() < DISTRACTOR_P:
        kinds.append(str(rng.choice(DISTRACTORS)))
    placed = []
    for kind in [kinds[i] for i in rng.permutation(len(kinds))]:
        item = pick(kind)
        box = place(rng, item, height, width, taken)
        if box is None:
            continue
        paste(canvas, item, box, rng.uniform(0.55, 1.0, 3))
        clipped = (max(box[0], 0), box[1], min(box[2], width), box[3])
        taken.append(clipped)
        placed.append((kind, box, clipped))

    objects, covered = [], np.zeros((height, width), dtype=bool)
    for kind, box, clipped in reversed(placed):  # the last pasted is in front: nothing covers it
        x1, y1, x2, y2 = clipped
        hidden = covered[y1:y2, x1:x2].mean()
        covered[y1:y2, x1:x2] = True
        truncated = 1 - (x2 - x1) / (box[2] - box[0])
        objects.append(KittiObject(type=kind, truncated=round(truncated, 2),
                                   occluded=0 if hidden < 0.1 else 1 if hidden < 0.5 else 2,
                                   bbox=tuple(float(v) for v in clipped), **fake_3d(rng, kind, box, height, width)))
    objects.reverse()
    objects += [KittiObject(type="DontCare", truncated=-1.0, occluded=-1, alpha=-10.0,
                            bbox=tuple(float(v) for v in region), dimensions=(-1.0, -1.0, -1.0),
                            location=(-1000.0, -1000.0, -1000.0), rotation_y=-10.0) for region in dontcare]
    return (canvas * 255).round().clip(0, 255).astype(np.uint8), objects


# ---------------------------------------------------------------- folder, manifest, regeneration


def parameters(cfg) -> dict[str, Any]:
    """What the folder's content depends on; a change makes an existing folder outdated."""
    height, width = (int(v) for v in cfg.canvas)
    if height < 32 or width < 64:
        raise ConfigError(f"data.canvas must be at least [32, 64], got {[height, width]}")
    if int(cfg.num_train) < 1 or int(cfg.num_val) < 1 or int(cfg.max_objects) < 1:
        raise ConfigError("data.num_train, data.num_val and data.max_objects must be at least 1")
    return {"num_train": int(cfg.num_train), "num_val": int(cfg.num_val), "canvas": [height, width],
            "objects": str(cfg.objects), "generator_seed": int(cfg.generator_seed),
            "max_objects": int(cfg.max_objects)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(root: Path, params: dict[str, Any], objects_root: str | None = None, progress: bool = True) -> None:
    """Write the whole set into a temporary sibling of ``root``, then swap it into place (``zoo.atomic``)."""
    from PIL import Image
    from rich.console import Console
    from rich.progress import Progress

    items = load_items(params["objects"], objects_root)
    photos = load_photos()
    height, width = params["canvas"]
    # folder_state has refused a root that is not a kitti_mini: an old or damaged set may be replaced
    with atomic_folder(root, may_replace=lambda _: True) as tmp:
        for sub in ("training/image_2", "training/label_2", "ImageSets"):
            (tmp / sub).mkdir(parents=True)
        frames = [("train", i) for i in range(params["num_train"])] + [("val", i) for i in range(params["num_val"])]
        ids: dict[str, list[str]] = {"train": [], "val": []}
        with Progress(console=Console(stderr=True), transient=True, disable=not progress) as bar:
            task = bar.add_task(f"generating kitti_mini in {root}", total=len(frames))
            for frame, (split, i) in enumerate(frames):
                rng = np.random.default_rng([params["generator_seed"], int(split == "val"), i])
                image, objects = render_frame(rng, photos, items[split], height, width, params["max_objects"])
                frame_id = f"{frame:06d}"
                Image.fromarray(image).save(tmp / "training" / "image_2" / f"{frame_id}.png", format="PNG")
                (tmp / "training" / "label_2" / f"{frame_id}.txt").write_text(
                    "".join(obj.to_line() + "\n" for obj in objects), encoding="utf-8")
                ids[split].append(frame_id)
                bar.advance(task)
        for split, split_ids in ids.items():
            (tmp / "ImageSets" / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids), encoding="utf-8")
        files = {p.relative_to(tmp).as_posix(): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"generator": GENERATOR, "version": VERSION, "parameters": params, "photos": list(PHOTOS),
                    "files": files}
        (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def folder_state(root: Path, params: dict[str, Any]) -> str | None:
    """None when ``root`` holds this exact set; else why it must be (re)generated. Raises if it is not ours."""
    if not root.exists():
        return "missing"
    if root.is_dir() and not any(root.iterdir()):
        return "empty"
    not_ours = ("move it away, or set data.root to another folder (kitti_mini only writes folders with its "
                "own MANIFEST.json; use data=kitti for real KITTI)")
    try:
        manifest = json.loads((root / "MANIFEST.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"'{root}' exists but has no readable MANIFEST.json, so kitti_mini did not make it",
                        not_ours) from err
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR:
        raise DataError(f"'{root}' holds a MANIFEST.json of another generator", not_ours)
    if manifest.get("version") != VERSION or manifest.get("parameters") != params:
        return "outdated (other generator version or parameters)"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "corrupt (MANIFEST.json lists no files)"
    for name, digest in files.items():
        path = root / name
        if not path.is_file():
            return f"partial ({name} is missing)"
        if sha256(path) != digest:
            return f"corrupt ({name} differs from MANIFEST.json)"
    return None


def ensure_kitti_mini(root: Path, params: dict[str, Any], objects_root: str | None = None,
                      progress: bool = True) -> Path:
    """``root`` holding a complete, current kitti_mini; generated or regenerated under a file lock."""
    from filelock import FileLock

    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):  # two ranks or runs must not generate at once
        reason = folder_state(root, params)
        if reason is not None:
            if reason not in ("missing", "empty"):
                logging.getLogger(__name__).warning("kitti_mini at %s is %s: regenerating", root, reason)
            generate(root, params, objects_root, progress)
    return root


@DATASETS.register("kitti_mini")
class KittiMiniDataModule(KittiDataModule):
    name = "kitti_mini"

    def __init__(self, cfg, shuffle_seed: int = 0):
        root = Path(cfg.root).expanduser() if cfg.root else zoo_home() / "data" / "kitti_mini"
        ensure_kitti_mini(root, parameters(cfg), cfg.objects_root)
        super().__init__(cfg, shuffle_seed, root=root)
