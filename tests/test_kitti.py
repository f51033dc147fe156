"""The detection data layer: KITTI parser and folders, COCO json, batches, the generated KITTI mini set."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tests.helpers import has_fashion_mnist
from zoo.config import compose
from zoo.data.detection import (
    DetectionDataset,
    DetectionRecord,
    collate_detection,
    fit_size,
    hflip_cxcywh,
)
from zoo.data.kitti import kitti_record, parse_kitti_line, read_kitti_labels, resolve_type_map
from zoo.data.kitti_mini import ensure_kitti_mini, folder_state, generate
from zoo.errors import ConfigError, DataError
from zoo.metrics.detection import metric_targets
from zoo.registry import DATASETS

CLASSES = ["Car", "Pedestrian", "Cyclist"]
# One line of every KITTI type, as they appear in label_2 (000000-000010 of the training set and similar).
EVERY_TYPE = """\
Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59
Van 0.00 1 -1.56 280.94 163.25 346.31 209.49 2.17 1.82 4.69 -12.98 1.73 33.33 -1.94
Truck 0.00 0 -1.57 599.41 156.40 629.75 189.25 2.85 2.63 12.34 0.47 1.49 69.44 -1.56
Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01
Person_sitting 0.00 2 -2.59 373.93 187.91 427.94 257.42 1.27 0.63 0.75 -4.68 1.60 13.74 -2.91
Cyclist 0.00 0 1.97 1120.57 167.40 1191.86 244.38 1.78 0.49 1.74 13.28 1.47 17.91 2.60
Tram 0.13 1 -1.50 0.00 130.39 173.13 239.55 3.51 2.62 16.96 -17.39 1.95 26.36 -2.08
Misc 0.00 3 -1.58 528.40 172.71 545.89 197.37 1.56 1.53 3.97 -5.49 1.72 54.06 -1.68
DontCare -1 -1 -10 800.38 163.67 825.45 184.07 -1 -1 -1 -1000 -1000 -1000 -10
"""


def close(tensor, expected) -> bool:
    return torch.allclose(tensor, torch.tensor(expected, dtype=tensor.dtype), atol=1e-5)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- parser


def test_parser_reads_every_kitti_type(tmp_path):
    objects = read_kitti_labels(write(tmp_path / "000000.txt", EVERY_TYPE))
    assert [o.type for o in objects] == ["Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist",
                                         "Tram", "Misc", "DontCare"]
    car, dontcare = objects[0], objects[-1]
    assert car.bbox == (587.01, 173.33, 614.12, 200.12) and car.dimensions == (1.65, 1.67, 3.64)
    assert car.location == (-0.65, 1.71, 46.70) and car.rotation_y == -1.59 and car.score is None
    assert objects[4].occluded == 2 and objects[6].truncated == 0.13 and objects[7].occluded == 3
    assert dontcare.occluded == -1 and dontcare.location == (-1000, -1000, -1000)
    assert all(parse_kitti_line(o.to_line(), "x") == o for o in objects)  # writes back losslessly


def test_parser_edge_cases(tmp_path):
    text = ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59 0.93  \r\n"
            "\n   \n"
            "Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01\t\n")
    result, plain = read_kitti_labels(write(tmp_path / "a.txt", text))
    assert result.score == 0.93 and plain.score is None and plain.type == "Pedestrian"
    assert read_kitti_labels(write(tmp_path / "empty.txt", "")) == []
    assert read_kitti_labels(write(tmp_path / "blank.txt", "\n\n")) == []


GOOD = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"


@pytest.mark.parametrize("line, message", [
    ("Car 0.00 0 -1.58 587.01 173.33 614.12 200.12", "expected 15 fields .* got 8"),
    (GOOD + " 0.9 7", "expected 15 fields .* got 17"),
    (GOOD.replace("173.33", "abc"), "field 6 is 'abc', not a number"),
    (GOOD.replace("-1.59", "nan"), "field 15 is 'nan', not a finite number"),
    (GOOD.replace("Car", "Bus"), "unknown object type 'Bus'"),
    (GOOD.replace("Car", "car"), "unknown object type 'car'"),
    (GOOD.replace("614.12", "500.00"), r"box has x2 < x1 \(500.0 < 587.01\)"),
    (GOOD.replace("200.12", "100.00"), r"box has y2 < y1 \(100.0 < 173.33\)"),
    (GOOD.replace(" 0 -1.58", " 5 -1.58"), "occluded must be"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path / "000007.txt", f"{GOOD}\n\n{line}\n")
    with pytest.raises(DataError, match=f"000007.txt:3: {message}") as err:
        read_kitti_labels(path)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- classes, type_map, ignore regions


def test_type_map_default_ignores_others_and_dontcare_is_always_ignored(tmp_path):
    objects = read_kitti_labels(write(tmp_path / "000000.txt", EVERY_TYPE))
    record = kitti_record(tmp_path / "x.png", "000000", objects, resolve_type_map(CLASSES, {}))
    assert record.labels.tolist() == [0, 1, 2]  # Car, Pedestrian, Cyclist
    assert len(record.ignore_boxes) == 6 and record.ignore_labels.tolist() == [-1] * 6  # 5 others + DontCare
    assert record.ignore_boxes[-1].tolist() == pytest.approx([800.38, 163.67, 825.45, 184.07])


def test_type_map_can_train_or_drop_types(tmp_path):
    objects = read_kitti_labels(write(tmp_path / "000000.txt", EVERY_TYPE))
    mapping = resolve_type_map(CLASSES, {"Van": "Car", "Person_sitting": "Pedestrian", "Truck": "drop",
                                         "Tram": "drop", "Misc": "ignore"})
    record = kitti_record(tmp_path / "x.png", "000000", objects, mapping)
    assert record.labels.tolist() == [0, 0, 1, 1, 2]  # Car, Van, Pedestrian, Person_sitting, Cyclist
    assert len(record.ignore_boxes) == 2  # Misc + DontCare


@pytest.mark.parametrize("classes, type_map, message", [
    (CLASSES, {"Van": "Bus"}, "neither a class nor ignore/drop"),
    (CLASSES, {"DontCare": "Car"}, "cannot be mapped"),
    (CLASSES, {"Car": "ignore"}, "cannot be mapped"),
    (["Car", "Lorry"], {}, "not a KITTI object type"),
    (["Car", "DontCare"], {}, "not a KITTI object type"),
])
def test_bad_type_map_is_a_config_error(classes, type_map, message):
    with pytest.raises(ConfigError, match=message):
        resolve_type_map(classes, type_map)


# ---------------------------------------------------------------- KITTI folders and splits


def make_kitti(root, n=6, image_sets=None, shape=(30, 90)):
    """A tiny KITTI folder: real photo crops as frames, one Car and one DontCare each."""
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize(shape[::-1])
    (root / "training" / "image_2").mkdir(parents=True)
    for i in range(n):
        photo.save(root / "training" / "image_2" / f"{i:06d}.png")
        write(root / "training" / "label_2" / f"{i:06d}.txt",
              f"Car 0.00 0 0.00 {i} 3 {i + 30} 18 1.5 1.6 3.9 0 1 10 0\n"
              "DontCare -1 -1 -10 60 0 90 15 -1 -1 -1 -1000 -1000 -1000 -10\n")
    for name, ids in (image_sets or {}).items():
        write(root / "ImageSets" / f"{name}.txt", "".join(f"{i}\n" for i in ids))
    return root


def kitti_cfg(root, **extra):
    return OmegaConf.merge(compose("kd_digits", ["data=kitti"]).data,
                           {"root": str(root) if root else None, "num_workers": 0, **extra})


def test_kitti_split_files_are_used_and_recorded(tmp_path):
    make_kitti(tmp_path, image_sets={"train": ["000000", "000002", "000004"], "val": ["000001", "000005"]})
    dm = DATASETS.get("kitti")(kitti_cfg(tmp_path))
    info = dm.split_info()
    assert info["ids"] == {"train": ["000000", "000002", "000004"], "val": ["000001", "000005"]}
    assert info["split_source"] == "ImageSets/train.txt+val.txt" and info["classes"] == CLASSES
    assert info["sizes"] == {"train": 3, "val": 2, "test": 2} and dm.num_classes == 3
    assert dm.transform_fingerprint is None  # random flips
    json.dumps(info)  # goes into record.json as is


def test_kitti_seeded_split_is_fixed_by_split_seed_only(tmp_path):
    make_kitti(tmp_path, n=10, image_sets={"train": ["000000"], "val": ["000001"]})
    ids = lambda **kw: DATASETS.get("kitti")(kitti_cfg(tmp_path, val_fraction=0.3, image_sets=None, **kw),
                                             shuffle_seed=7).split_info()["ids"]
    a, b, c = ids(), ids(), ids(split_seed=1)  # image_sets=null: the split files are not used
    assert a == b and a != c and len(a["val"]) == 3 and len(a["train"]) == 7
    assert sorted(a["train"] + a["val"]) == [f"{i:06d}" for i in range(10)]


def test_kitti_split_file_problems(tmp_path):
    make_kitti(tmp_path, image_sets={"train": ["000000"]})
    with pytest.raises(DataError, match="only one of train.txt and val.txt"):
        DATASETS.get("kitti")(kitti_cfg(tmp_path))
    write(tmp_path / "ImageSets" / "val.txt", "000001\n000099\n")
    with pytest.raises(DataError, match="val.txt: 1 frame id.* '000099'"):
        DATASETS.get("kitti")(kitti_cfg(tmp_path))
    (tmp_path / "ImageSets" / "val.txt").write_text("000001\n")
    (tmp_path / "training" / "image_2" / "000001.png").unlink()
    with pytest.raises(DataError, match="no image, e.g. '000001.png'"):
        DATASETS.get("kitti")(kitti_cfg(tmp_path))


@pytest.mark.parametrize("root", [None, "nowhere", "empty"])
def test_missing_kitti_root_says_where_kitti_goes(tmp_path, root):
    if root == "empty":
        (tmp_path / root).mkdir()
    with pytest.raises(DataError) as err:
        DATASETS.get("kitti")(kitti_cfg(tmp_path / root if root else None))
    assert "training/image_2" in str(err.value) + err.value.hint
    assert "data.root=/path/to/kitti" in err.value.hint and "data=kitti_mini" in err.value.hint


def test_cli_missing_kitti_is_one_line_with_a_hint(tmp_path, capsys):
    from zoo.cli import main

    assert main(["train", "task=detr_kitti", f"data.root={tmp_path / 'absent'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: KITTI folder") and "data=kitti_mini" in err[1] and len(err) == 2


# ---------------------------------------------------------------- resize, normalisation, flip, padding


def record(image_path, boxes, labels, ignore=()):
    return DetectionRecord(image=image_path, image_id=image_path.stem,
                           boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                           labels=np.asarray(labels, dtype=np.int64),
                           ignore_boxes=np.asarray(ignore, dtype=np.float32).reshape(len(ignore), 4),
                           ignore_labels=np.full(len(ignore), -1, dtype=np.int64))


def gradient_png(path, height, width):
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    Image.fromarray(np.stack([ramp, ramp[:, ::-1], ramp], -1)).save(path)
    return path


def test_fit_size_rule():
    assert fit_size(375, 1242, (384, 1280)) == (384, 1272)  # shorter side binds
    assert fit_size(375, 1242, (384, 1000)) == (302, 1000)  # longer side binds
    assert fit_size(480, 640, (800, 1333)) == (800, 1067) and fit_size(640, 480, (800, 1333)) == (1067, 800)


def test_boxes_are_normalised_by_the_resized_unpadded_image(tmp_path):
    image = gradient_png(tmp_path / "a.png", 50, 100)
    # box x 10..30, y 5..25 of a 100 x 50 image; ignore region 60..100 x 0..10; image resized to 25 x 50
    dataset = DetectionDataset([record(image, [[10, 5, 30, 25], [0, 0, 0, 9]], [2, 0], [[60, 0, 100, 10]])],
                               image_size=(25, 50))
    sample = dataset[0]
    t = sample["target"]
    assert sample["inputs"].shape == (3, 25, 50)
    assert close(t["boxes"], [[0.2, 0.3, 0.2, 0.4]])  # the zero-width box is dropped
    assert t["class_labels"].tolist() == [2] and t["ignore_labels"].tolist() == [-1]
    assert close(t["ignore_boxes"], [[0.8, 0.1, 0.4, 0.2]])
    assert t["orig_size"].tolist() == [50, 100] and t["size"].tolist() == [25, 50] and t["image_id"] == "a"
    # ImageNet normalisation, seen without resizing: red's first column is 0, green's is 255
    unresized = DetectionDataset(dataset.records, image_size=(50, 100))[0]["inputs"]
    assert unresized[:2, 0, 0].tolist() == pytest.approx([-0.485 / 0.229, (1 - 0.456) / 0.224], abs=1e-5)


def test_hflip_flips_pixels_and_boxes_together(tmp_path):
    image = gradient_png(tmp_path / "a.png", 20, 40)
    plain = DetectionDataset([record(image, [[4, 2, 12, 10]], [1])], (20, 40))[0]
    flipping = DetectionDataset([record(image, [[4, 2, 12, 10]], [1])], (20, 40), hflip=True)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        sample = flipping[0]
        flipped = not torch.equal(sample["inputs"], plain["inputs"])
        seen.add(flipped)
        if flipped:
            assert torch.equal(sample["inputs"], plain["inputs"].flip(-1))
            assert close(sample["target"]["boxes"], [[0.8, 0.3, 0.2, 0.4]])  # cx 0.2 -> 0.8
    assert seen == {True, False}
    assert close(hflip_cxcywh(torch.tensor([[0.1, 0.5, 0.2, 0.2]])), [[0.9, 0.5, 0.2, 0.2]])


def test_batches_pad_to_the_batch_max_with_a_pixel_mask(tmp_path):
    wide = record(gradient_png(tmp_path / "wide.png", 20, 60), [[0, 0, 6, 4]], [0])
    tall = record(gradient_png(tmp_path / "tall.png", 30, 60), [], [])  # 30 x 60 fits (20, 60) as 20 x 40
    batch = collate_detection([DetectionDataset([wide, tall], (20, 60))[i] for i in (0, 1)])
    assert set(batch) == {"inputs", "pixel_mask", "targets", "index"}
    assert batch["inputs"].shape == (2, 3, 20, 60) and batch["pixel_mask"].dtype == torch.long
    assert batch["pixel_mask"][0].all() and batch["pixel_mask"][1, :, :40].all()
    assert not batch["pixel_mask"][1, :, 40:].any() and not batch["inputs"][1, :, :, 40:].any()
    assert batch["index"].tolist() == [0, 1] and batch["targets"][1]["boxes"].shape == (0, 4)
    assert batch["targets"][1]["size"].tolist() == [20, 40]


def test_metric_targets_turn_ignore_regions_into_crowd_boxes_per_class():
    target = {"boxes": torch.tensor([[0.5, 0.5, 0.2, 0.4]]), "class_labels": torch.tensor([1]),
              "ignore_boxes": torch.tensor([[0.25, 0.5, 0.1, 0.2], [0.75, 0.5, 0.1, 0.2]]),
              "ignore_labels": torch.tensor([2, -1]), "orig_size": torch.tensor([50, 100])}
    out = metric_targets([target], num_classes=3)[0]
    assert out["boxes"][0].tolist() == pytest.approx([40, 15, 60, 35])
    assert out["labels"].tolist() == [1, 2, 0, 1, 2] and out["iscrowd"].tolist() == [0, 1, 1, 1, 1]


def test_kitti_loader_batches_real_layout(tmp_path):
    make_kitti(tmp_path, n=4, image_sets={"train": ["000000", "000001"], "val": ["000002", "000003"]})
    dm = DATASETS.get("kitti")(kitti_cfg(tmp_path, image_size=[30, 90]))
    batch = next(iter(dm.eval_loader("val")))
    assert batch["inputs"].shape == (2, 3, 30, 90) and dm.input_shape == (3, 30, 90)
    target = batch["targets"][0]
    assert target["image_id"] == "000002" and target["class_labels"].tolist() == [0]
    assert close(target["boxes"], [[17 / 90, 10.5 / 30, 30 / 90, 15 / 30]])
    assert close(target["ignore_boxes"], [[75 / 90, 7.5 / 30, 30 / 90, 15 / 30]])


# ---------------------------------------------------------------- COCO json


def coco_json(images=None, annotations=None, categories=None):
    return {"images": images if images is not None else [{"id": 1, "file_name": "a.png"},
                                                        {"id": 2, "file_name": "b.png"}],
            "annotations": annotations if annotations is not None else [
                {"image_id": 1, "category_id": 3, "bbox": [10, 5, 20, 20], "iscrowd": 0},
                {"image_id": 1, "category_id": 1, "bbox": [50, 0, 40, 10], "iscrowd": 1},
                {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]}],
            "categories": categories if categories is not None else [{"id": 3, "name": "cat"},
                                                                    {"id": 1, "name": "person"}]}


def make_coco(root, train=None, val=None):
    for split, data in (("train", train), ("val", val)):
        (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
        for name in ("a.png", "b.png"):
            gradient_png(root / f"{split}2017" / name, 50, 100)
        write(root / "annotations" / f"instances_{split}2017.json", json.dumps(data or coco_json()))
    return root


def coco_cfg(root):
    return OmegaConf.merge(compose("kd_digits", ["data=coco_detection"]).data,
                           {"root": str(root), "num_workers": 0, "image_size": [50, 100]})


def test_coco_reader_maps_categories_and_crowds(tmp_path):
    dm = DATASETS.get("coco_detection")(coco_cfg(make_coco(tmp_path)))
    assert dm.classes == ["person", "cat"] and dm.category_ids == [1, 3]  # contiguous labels in id order
    batch = next(iter(dm.eval_loader("val")))
    first = batch["targets"][0]
    assert first["image_id"] == "1" and first["class_labels"].tolist() == [1]
    assert close(first["boxes"], [[0.2, 0.3, 0.2, 0.4]])
    assert close(first["ignore_boxes"], [[0.7, 0.1, 0.4, 0.2]])
    assert first["ignore_labels"].tolist() == [0]  # a crowd region keeps its class
    assert batch["targets"][1]["class_labels"].tolist() == [0]


@pytest.mark.parametrize("text, message", [
    ("{not json", "instances_val2017.json: not valid JSON"),
    (json.dumps({"images": []}), "instances_val2017.json: missing or non-list 'annotations'"),
    (json.dumps(coco_json(annotations=[{"image_id": 1, "bbox": [0, 0, 1, 1]}])),
     r"annotations\[0\] lacks 'category_id'"),
    (json.dumps(coco_json(annotations=[{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]}])),
     "category_id 7 is not in categories"),
    (json.dumps(coco_json(annotations=[{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}])),
     "image_id 9 is not in images"),
    (json.dumps(coco_json(annotations=[{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}])),
     "negative or non-finite size"),
    (json.dumps(coco_json(annotations=[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}])),
     "bbox must be 4 numbers"),
    (json.dumps(coco_json(images=[{"id": 1}])), r"images\[0\] lacks 'file_name'"),
    (json.dumps(coco_json(images=[{"id": 1, "file_name": "gone.png"}], annotations=[])), "'gone.png'.* not found"),
    (json.dumps(coco_json(categories=[{"id": 1, "name": "person"}], annotations=[])), "categories differ"),
])
def test_coco_malformed_input_names_the_file(tmp_path, text, message):
    make_coco(tmp_path)
    (tmp_path / "annotations" / "instances_val2017.json").write_text(text)
    with pytest.raises(DataError, match=message):
        DATASETS.get("coco_detection")(coco_cfg(tmp_path))


# ---------------------------------------------------------------- the generated KITTI mini set

TINY = {"num_train": 6, "num_val": 3, "canvas": [48, 144], "objects": "digits", "generator_seed": 0,
        "max_objects": 3}


@pytest.mark.parametrize("objects", [
    "digits", pytest.param("fashion_mnist", marks=pytest.mark.skipif(not has_fashion_mnist(),
                                                                     reason="needs dataset-fashion-mnist"))])
def test_kitti_mini_generation_is_byte_identical(tmp_path, objects):
    params = {**TINY, "objects": objects}
    generate(tmp_path / "a", params, progress=False)
    generate(tmp_path / "b", params, progress=False)
    files = lambda root: {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a == b and len(a) == 2 * 9 + 2 + 1 + 1  # images, labels, two split files, MANIFEST.json, .zoo-written
    assert a["ImageSets/val.txt"] == b"000006\n000007\n000008\n"
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind
    generate(tmp_path / "c", {**params, "generator_seed": 1}, progress=False)
    assert files(tmp_path / "c")["training/image_2/000000.png"] != a["training/image_2/000000.png"]


def test_kitti_mini_detects_corrupt_partial_outdated_and_foreign_folders(tmp_path):
    root = ensure_kitti_mini(tmp_path / "mini", TINY, progress=False)
    assert folder_state(root, TINY) is None
    image = root / "training" / "image_2" / "000001.png"
    original = image.read_bytes()
    image.write_bytes(original[:-10])
    assert folder_state(root, TINY).startswith("corrupt (training/image_2/000001.png")
    ensure_kitti_mini(root, TINY, progress=False)
    assert image.read_bytes() == original
    (root / "training" / "label_2" / "000002.txt").unlink()
    assert folder_state(root, TINY).startswith("partial")
    assert folder_state(root, {**TINY, "num_val": 4}).startswith("outdated")
    ensure_kitti_mini(root, {**TINY, "num_val": 4}, progress=False)
    assert len(list((root / "training" / "label_2").iterdir())) == 10
    foreign = write(tmp_path / "kitti" / "training" / "label_2" / "000000.txt", GOOD).parents[2]
    with pytest.raises(DataError, match="no readable MANIFEST.json") as err:
        ensure_kitti_mini(foreign, TINY, progress=False)
    assert "data.root" in err.value.hint and (foreign / "training" / "label_2" / "000000.txt").is_file()


def test_kitti_mini_module_reads_its_folder_with_the_kitti_reader(zoo_home):
    cfg = OmegaConf.merge(compose("kd_digits", ["data=kitti_mini"]).data,
                          {"num_train": 12, "num_val": 4, "objects": "digits", "canvas": [48, 144],
                           "image_size": [48, 144]})
    dm = DATASETS.get("kitti_mini")(cfg)
    root = zoo_home / "data" / "kitti_mini"
    assert dm.root == root and (root / "MANIFEST.json").is_file()
    info = dm.split_info()
    assert info["sizes"] == {"train": 12, "val": 4, "test": 4} and info["ids"]["val"][0] == "000012"
    labels = [read_kitti_labels(p) for p in sorted((root / "training" / "label_2").glob("*.txt"))]
    kinds = {o.type for objects in labels for o in objects}
    assert {"Car", "Pedestrian", "Cyclist", "DontCare"} <= kinds and kinds & {"Van", "Misc"}
    assert all(len(o.to_line().split()) == 15 for objects in labels for o in objects)
    records = dm.records["train"] + dm.records["val"]
    assert sum(len(r.boxes) for r in records) == sum(o.type in CLASSES for objects in labels for o in objects)
    assert any(len(r.ignore_boxes) for r in records)  # DontCare and distractors became ignore regions
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"].shape == (12, 3, 48, 144)
    boxes = torch.cat([t["boxes"] for t in batch["targets"]])
    assert len(boxes) and (boxes > 0).all() and (boxes <= 1).all()
    assert DATASETS.get("kitti_mini")(cfg).fingerprint == dm.fingerprint  # reused, not regenerated
