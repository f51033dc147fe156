import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import FASHION_MNIST, fake_fashion_mnist, has_fashion_mnist, write_idx
from zoo.config import compose
from zoo.errors import DataError
from zoo.registry import DATASETS


def digits(seed=0):
    return DATASETS.get("digits")(compose("kd_digits").data, shuffle_seed=seed)


def test_digits_split_is_fixed_disjoint_and_complete():
    a, b = digits(), digits(seed=5)
    assert a.fingerprint == b.fingerprint  # the run seed changes the order, never the split
    sizes = a.split_info()["sizes"]
    assert sum(sizes.values()) == 1797 and sizes["test"] == round(1797 * 0.25)
    rows = [a.splits[s].inputs.reshape(len(a.splits[s]), -1) for s in ("train", "val", "test")]
    seen = {tuple(r.tolist()) for r in rows[0]}
    overlap = sum(tuple(r.tolist()) in seen for r in rows[2])
    assert overlap < 15  # digits has a few exact duplicate images; index-level disjointness is by construction


def test_batches_are_dicts_with_index():
    batch = next(iter(digits().eval_loader("test")))
    assert set(batch) == {"inputs", "targets", "index"}
    assert batch["inputs"].shape[1:] == (1, 8, 8) and batch["index"][0] == 0


def test_shuffle_order_depends_on_seed_and_epoch():
    loader = digits(seed=1).train_dataloader()
    loader.sampler.set_epoch(0)
    first = next(iter(loader))["index"]
    loader.sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))["index"])
    loader.sampler.set_epoch(0)
    assert torch.equal(first, next(iter(loader))["index"])


def fmnist_cfg(root, **extra):
    return OmegaConf.merge(compose("kd_fashion_mnist").data, {"root": str(root), "val_size": 10, **extra})


def test_fashion_mnist_reads_idx_files(tmp_path):
    fake_fashion_mnist(tmp_path)
    dm = DATASETS.get("fashion_mnist")(fmnist_cfg(tmp_path))
    assert dm.split_info()["sizes"] == {"train": 50, "val": 10, "test": 20}


def test_fashion_mnist_missing_folder_names_the_package_and_key(tmp_path):
    with pytest.raises(DataError) as err:
        DATASETS.get("fashion_mnist")(fmnist_cfg(tmp_path / "nowhere"))
    assert "apt-get install dataset-fashion-mnist" in err.value.hint and "data.root" in err.value.hint


def test_fashion_mnist_truncated_file_is_named(tmp_path):
    fake_fashion_mnist(tmp_path, truncate_test_images=100)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: truncated"):
        DATASETS.get("fashion_mnist")(fmnist_cfg(tmp_path))


def test_fashion_mnist_label_out_of_range(tmp_path):
    fake_fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(20, 12))
    with pytest.raises(DataError, match="labels outside"):
        DATASETS.get("fashion_mnist")(fmnist_cfg(tmp_path))


@pytest.mark.parametrize("generator", ["scene_vqa", "kitti_mini"])
def test_generated_sets_read_fashion_mnist_items_with_the_same_checks(tmp_path, generator):
    """scene_vqa and kitti_mini place Fashion-MNIST items on canvases: they read them through the data module's
    reader, so a missing folder says whose objects it holds and a bad label file is refused before any scene."""
    import importlib

    load_items = importlib.import_module(f"zoo.data.{generator}").load_items
    with pytest.raises(DataError, match=rf"\(the {generator} objects\) does not exist") as err:
        load_items("fashion_mnist", str(tmp_path / "nowhere"))
    assert "data.objects=digits" in err.value.hint
    fake_fashion_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(59, 3))
    with pytest.raises(DataError, match="train images and labels differ in count"):
        load_items("fashion_mnist", str(tmp_path))


@pytest.mark.skipif(not has_fashion_mnist(), reason="needs apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_has_the_official_split():
    dm = DATASETS.get("fashion_mnist")(fmnist_cfg(FASHION_MNIST, val_size=5000))
    assert dm.split_info()["sizes"] == {"train": 55000, "val": 5000, "test": 10000}


def test_imagefolder_reads_real_photos(tmp_path):
    from PIL import Image
    from skimage import data as photos

    for split in ("train", "val"):
        for name in ("astronaut", "coffee"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            Image.fromarray(getattr(photos, name)()).save(folder / "0.png")
    cfg = OmegaConf.merge(compose("kd_digits", ["data=imagefolder"]).data,
                          {"root": str(tmp_path), "image_size": 32, "num_workers": 0})
    dm = DATASETS.get("imagefolder")(cfg)
    batch = next(iter(dm.eval_loader("test")))
    assert dm.num_classes == 2 and batch["inputs"].shape == (2, 3, 32, 32)
    assert dm.transform_fingerprint is None  # random crops: no teacher cache


def test_imagefolder_missing_root(tmp_path):
    cfg = OmegaConf.merge(compose("kd_digits", ["data=imagefolder"]).data, {"root": str(tmp_path)})
    with pytest.raises(DataError, match="must contain train/ and val/"):
        DATASETS.get("imagefolder")(cfg)


def test_cli_missing_data_folder_is_one_line_with_a_hint(tmp_path, capsys):
    from zoo.cli import main

    assert main(["train", "task=kd_fashion_mnist", f"data.root={tmp_path / 'absent'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: Fashion-MNIST folder") and "does not exist" in err[0]
    assert "apt-get install dataset-fashion-mnist" in err[1] and len(err) == 2
