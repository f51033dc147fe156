"""CIFAR-10, CIFAR-100 and SVHN readers on tiny files written here in the official formats: Python 2-style pickles
(protocol 2, str keys that read back as bytes, numpy arrays) and MATLAB v5 files; every bad input is one DataError
naming the file, and a pickle that would run code is refused without running it."""

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from zoo.config import compose
from zoo.data.cifar import CIFAR10_MEAN, CIFAR10_STD, RECONSTRUCT
from zoo.data.svhn import MEAN as SVHN_MEAN
from zoo.data.svhn import STD as SVHN_STD
from zoo.errors import DataError
from zoo.registry import DATASETS

N_BATCH, N_TEST = 12, 20  # images per CIFAR-10 training batch (five of them) and per test file


class Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the official CIFAR files: protocol 2, every str or bytes a Python 2
    ``str`` (SHORT_BINSTRING / BINSTRING, bytes again under encoding="bytes", so no ``_codecs.encode`` global) and
    numpy's ``_reconstruct`` under ``numpy_module`` (numpy 1's name, as in the official files)."""

    dispatch = dict(pickle._Pickler.dispatch)
    numpy_module = b"numpy.core.multiarray"

    def save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        short = len(data) < 256
        self.write((pickle.SHORT_BINSTRING + bytes([len(data)]) if short
                    else pickle.BINSTRING + struct.pack("<i", len(data))) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is RECONSTRUCT:
            self.write(pickle.GLOBAL + self.numpy_module + b"\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def write_pickle(path: Path, content, numpy_module: bytes = b"numpy.core.multiarray") -> None:
    buffer = io.BytesIO()
    pickler = Python2Pickler(buffer, protocol=2)
    pickler.numpy_module = numpy_module
    pickler.dump(content)
    path.write_bytes(buffer.getvalue())


def pixels(n: int, first_id: int, rng) -> np.ndarray:
    """n random CIFAR rows (N x 3072); the first two red pixels of row i hold first_id + i, so samples can be told
    apart after the split."""
    rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    ids = np.arange(first_id, first_id + n)
    rows[:, 0], rows[:, 1] = ids // 256, ids % 256
    return rows


def marked_image() -> np.ndarray:
    """A CIFAR row by the format's own description: red plane first, then green, then blue, each 32x32 row-major.
    Red is 255 at row 3, column 7 and 0 elsewhere; green is 128 everywhere; blue is 0."""
    row = np.zeros(3072, dtype=np.uint8)
    row[3 * 32 + 7] = 255
    row[1024:2048] = 128
    return row


def fake_cifar10(root: Path, **numpy_module) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        write_pickle(folder / f"data_batch_{i}", {
            b"batch_label": f"training batch {i} of 5".encode(), b"data": pixels(N_BATCH, (i - 1) * N_BATCH, rng),
            b"labels": [int(v) for v in rng.integers(0, 10, N_BATCH)],
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(N_BATCH)]}, **numpy_module)
    test = pixels(N_TEST, 1000, rng)
    test[0] = marked_image()
    write_pickle(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"data": test,
                                         b"labels": list(range(10)) * (N_TEST // 10),
                                         b"filenames": [f"t_{j}.png".encode() for j in range(N_TEST)]}, **numpy_module)
    write_pickle(folder / "batches.meta", {b"num_cases_per_batch": N_BATCH, b"num_vis": 3072, b"label_names": [
        b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]})
    return folder


def fake_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", 60), ("test", N_TEST)):
        fine = rng.integers(0, 100, n)
        write_pickle(folder / split, {b"batch_label": f"{split}ing batch 1 of 1".encode(), b"data": pixels(n, 0, rng),
                                      b"fine_labels": [int(v) for v in fine],
                                      b"coarse_labels": [int(v) // 5 for v in fine],
                                      b"filenames": [f"{split}_{j}.png".encode() for j in range(n)]})
    write_pickle(folder / "meta", {b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)]})
    return folder


def write_mat(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    from scipy.io import savemat

    savemat(path, {"X": images, "y": labels})  # MATLAB v5, as the official files


def fake_svhn(root: Path, train: int = 40, test: int = N_TEST) -> Path:
    folder = root / "svhn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name, n in (("train_32x32.mat", train), ("test_32x32.mat", test)):
        images = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # row, column, channel, image
        images[3, 7, 0, 0], images[3, 7, 1:, 0] = 255, 0  # image 0: pure red at row 3, column 7
        labels = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = digit 0
        write_mat(folder / name, images, labels)
    return folder


def build(task_data: str, root: Path, *overrides: str):
    cfg = compose("kd_fashion_mnist", [f"data={task_data}", f"data.root={root}", "data.val_size=10", *overrides])
    return DATASETS.get(cfg.data.name)(cfg.data)


def ids(split) -> set[int]:
    """The ids that ``pixels`` wrote into the first two red pixels, read back through the normalisation."""
    raw = (split.inputs[:, 0, 0, :2] * CIFAR10_STD[0] + CIFAR10_MEAN[0]) * 255
    raw = raw.round().long()
    return set((raw[:, 0] * 256 + raw[:, 1]).tolist())


def test_cifar10_reads_the_official_pickles(tmp_path):
    dm = build("cifar10", fake_cifar10(tmp_path))
    assert dm.kind == "image_classification" and dm.num_classes == 10 and dm.input_shape == (3, 32, 32)
    assert dm.split_info()["sizes"] == {"train": 5 * N_BATCH - 10, "val": 10, "test": N_TEST}
    batch = next(iter(dm.eval_loader("test")))
    assert batch["inputs"].shape == (N_TEST, 3, 32, 32) and batch["inputs"].dtype == torch.float32
    assert batch["targets"].tolist() == list(range(10)) * 2
    train, val = ids(dm.splits["train"]), ids(dm.splits["val"])
    assert not train & val and train | val == set(range(5 * N_BATCH))  # every training image once, none shared


def test_cifar_image_layout_and_normalisation(tmp_path):
    image = build("cifar10", fake_cifar10(tmp_path)).splits["test"].inputs[0]
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    raw = image * std + mean
    red = torch.zeros(32, 32)
    red[3, 7] = 1.0
    assert torch.allclose(raw[0], red, atol=1e-5)  # row 3, column 7 of channel 0, nowhere else
    assert torch.allclose(raw[1], torch.full((32, 32), 128 / 255), atol=1e-5) and raw[2].abs().max() < 1e-5
    assert image[1].mean().abs() < 0.1  # mid-grey green is near the training mean: about 0 once normalised
    assert all(0.4 < m < 0.55 and 0.2 < s < 0.3 for m, s in zip(CIFAR10_MEAN, CIFAR10_STD, strict=True))


def test_numpy_2_pickles_are_read_too(tmp_path):
    dm = build("cifar10", fake_cifar10(tmp_path, numpy_module=b"numpy._core.multiarray"))
    assert len(dm.splits["test"]) == N_TEST


def test_train_subset_and_disjoint_train_slices(tmp_path):
    root = fake_cifar10(tmp_path)
    whole = ids(build("cifar10", root).splits["train"])
    first = ids(build("cifar10", root, "data.train_slice=[0,20]").splits["train"])
    rest = ids(build("cifar10", root, "data.train_slice=[20,null]").splits["train"])
    assert len(first) == 20 and not first & rest and first | rest == whole
    assert len(build("cifar10", root, "data.train_subset=7").splits["train"]) == 7


def test_cifar100_fine_by_default_coarse_on_request(tmp_path):
    root = fake_cifar100(tmp_path)
    fine, coarse = build("cifar100", root), build("cifar100", root, "data.labels=coarse")
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert torch.equal(fine.splits["test"].targets // 5, coarse.splits["test"].targets)
    assert fine.split_info()["sizes"] == {"train": 50, "val": 10, "test": N_TEST}
    assert fine.fingerprint != coarse.fingerprint
    with pytest.raises(DataError, match="unknown data.labels 'parity'"):
        build("cifar100", root, "data.labels=parity")


def test_svhn_reads_the_official_mat_files(tmp_path):
    dm = build("svhn", fake_svhn(tmp_path))
    assert dm.num_classes == 10 and dm.split_info()["sizes"] == {"train": 30, "val": 10, "test": N_TEST}
    test = dm.splits["test"]
    assert test.targets.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0] * 2  # the files' 10 is digit 0
    raw = test.inputs[0] * torch.tensor(SVHN_STD).view(3, 1, 1) + torch.tensor(SVHN_MEAN).view(3, 1, 1)
    assert raw[:, 3, 7].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-5)  # red, at row 3, column 7


@pytest.mark.parametrize("task_data, shown", [("cifar10", "data.root=/path/to/cifar-10-batches-py"),
                                              ("cifar100", "data.root=/path/to/cifar-100-python"),
                                              ("svhn", "data.root=/path/to/svhn")])
def test_shipped_blocks_compose_and_a_null_root_says_what_to_set(task_data, shown, tmp_path):
    cfg = compose("kd_fashion_mnist", [f"data={task_data}"])
    assert cfg.data.root is None and cfg.data.val_size == 5000 and cfg.data.batch_size == 128
    with pytest.raises(DataError, match="needs its folder") as err:
        DATASETS.get(cfg.data.name)(cfg.data)
    assert shown in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="does not exist"):
        build(task_data, tmp_path / "absent")


def test_fast_dev_run_on_cifar10(tmp_path):
    from zoo.train import train

    cfg = compose("kd_fashion_mnist", ["data=cifar10", f"data.root={fake_cifar10(tmp_path)}", "data.val_size=10",
                                       "data.batch_size=16", "trainer.fast_dev_run=true", "teacher.recipe.epochs=1",
                                       "trainer.enable_progress_bar=false", f"run.root={tmp_path / 'runs'}"])
    result = train(cfg, say=lambda *_: None)
    assert result.record.data["sizes"]["test"] == N_TEST


def malicious(marker: Path, via: str = "system"):
    """An object whose unpickling creates ``marker``: through ``os.system`` or through ``eval``."""
    import os

    class RunsCode:
        def __reduce__(self):
            if via == "eval":
                return eval, (f"__import__('pathlib').Path({str(marker)!r}).touch()",)
            return os.system, (f"touch {marker}",)

    return RunsCode()


def break_cifar(folder: Path, case: str, marker: Path) -> str:
    """Spoils one file of a CIFAR-10 folder; returns the file's name."""
    batch = folder / "data_batch_2"
    good = {b"data": np.zeros((N_BATCH, 3072), np.uint8), b"labels": [0] * N_BATCH}
    if case == "missing file":
        batch.unlink()
    elif case == "truncated":
        batch.write_bytes(batch.read_bytes()[:3000])
    elif case == "corrupt":
        batch.write_bytes(b"\x80\x02garbage" + bytes(range(256)))
    elif case == "not a dict":
        write_pickle(batch, [1, 2, 3])
    elif case == "runs code":
        write_pickle(batch, {b"data": malicious(marker)})
    elif case == "eval":
        write_pickle(batch, {b"data": malicious(marker, via="eval")})
    elif case == "missing key":
        write_pickle(batch, {b"data": good[b"data"]})
    elif case == "wrong shape":
        write_pickle(batch, {**good, b"data": np.zeros((N_BATCH, 3000), np.uint8)})
    elif case == "wrong dtype":
        write_pickle(batch, {**good, b"data": np.zeros((N_BATCH, 3072), np.float32)})
    elif case == "label count":
        write_pickle(batch, {**good, b"labels": [0] * (N_BATCH - 1)})
    elif case == "label range":
        write_pickle(batch, {**good, b"labels": [10] * N_BATCH})
    elif case == "label type":
        write_pickle(batch, {**good, b"labels": [b"cat"] * N_BATCH})
    return batch.name


CIFAR_CASES = {"missing file": "file not found", "truncated": "not a readable CIFAR pickle",
               "corrupt": "not a readable CIFAR pickle", "not a dict": "holds a list, not a dict",
               "runs code": "refusing to unpickle 'posix.system'", "eval": "refusing to unpickle '__builtin__.eval'",
               "missing key": "no 'labels' entry", "wrong shape": r"shape \(12, 3000\), expected a uint8",
               "wrong dtype": "'data' is a float32 array", "label count": "11 labels for 12 images",
               "label range": r"labels outside 0..9 \(found 10..10\)", "label type": "not integers"}


@pytest.mark.parametrize("case", CIFAR_CASES)
def test_every_bad_cifar_file_is_one_line_naming_the_file(case, tmp_path):
    marker = tmp_path / "ran"
    name = break_cifar(fake_cifar10(tmp_path), case, marker)
    with pytest.raises(DataError, match=CIFAR_CASES[case]) as err:
        build("cifar10", tmp_path / "cifar-10-batches-py")
    assert name in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()  # the shell command in the "runs code" pickle never ran


@pytest.mark.parametrize("via", ["system", "eval"])
def test_the_malicious_pickles_really_would_run_code(via, tmp_path):
    """The control for the refusals above: plain pickle.loads of the same bytes does create the marker."""
    marker = tmp_path / "ran"
    write_pickle(tmp_path / "batch", {b"data": malicious(marker, via)})
    with open(tmp_path / "batch", "rb") as handle:
        pickle.load(handle, encoding="bytes")
    assert marker.exists()


def test_cifar100_label_out_of_range(tmp_path):
    folder = fake_cifar100(tmp_path)
    write_pickle(folder / "test", {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [5, 100],
                                   b"coarse_labels": [1, 19]})
    with pytest.raises(DataError, match=r"test: fine_labels outside 0..99"):
        build("cifar100", folder)
    assert len(build("cifar100", folder, "data.labels=coarse").splits["test"]) == 2


def test_val_size_larger_than_the_training_set(tmp_path):
    with pytest.raises(DataError, match="data.val_size=60 leaves no training examples"):
        build("cifar10", fake_cifar10(tmp_path), "data.val_size=60")


def break_svhn(folder: Path, case: str) -> None:
    path = folder / "test_32x32.mat"
    images, labels = np.zeros((32, 32, 3, 4), np.uint8), np.ones((4, 1), np.uint8)
    if case == "missing file":
        path.unlink()
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif case == "corrupt":
        path.write_bytes(b"not a mat file" * 20)
    elif case == "missing key":
        from scipy.io import savemat

        savemat(path, {"X": images})
    elif case == "wrong shape":
        write_mat(path, np.zeros((28, 28, 3, 4), np.uint8), labels)
    elif case == "label count":
        write_mat(path, images, np.ones((3, 1), np.uint8))
    elif case == "label range":
        write_mat(path, images, np.array([[1], [0], [10], [11]], np.uint8))
    elif case == "label type":
        write_mat(path, images, np.full((4, 1), 1.5))


SVHN_CASES = {"missing file": "file not found", "truncated": "not a readable MATLAB v5 file",
              "corrupt": "not a readable MATLAB v5 file", "missing key": "no 'y' variable",
              "wrong shape": r"'X' is a uint8 array of shape \(28, 28, 3, 4\)", "label count": "for 4 images",
              "label range": r"labels outside 1..10 \(found 0..11\)", "label type": "not integers"}


@pytest.mark.parametrize("case", SVHN_CASES)
def test_every_bad_svhn_file_is_one_line_naming_the_file(case, tmp_path):
    folder = fake_svhn(tmp_path)
    break_svhn(folder, case)
    with pytest.raises(DataError, match=SVHN_CASES[case]) as err:
        build("svhn", folder)
    assert "test_32x32.mat" in str(err.value) and "\n" not in str(err.value)


def test_export_recipes_name_the_classes(tmp_path):
    from zoo.export.preprocess import spec_for_datamodule

    cifar10 = spec_for_datamodule(build("cifar10", fake_cifar10(tmp_path)), "float32")
    assert cifar10["classes"][:2] == ["airplane", "automobile"] and cifar10["mean"] == list(CIFAR10_MEAN)
    folder = fake_cifar100(tmp_path)
    assert spec_for_datamodule(build("cifar100", folder, "data.labels=coarse"), "float32")["classes"][19] == "coarse_19"
    assert spec_for_datamodule(build("svhn", fake_svhn(tmp_path)), "float32")["classes"][0] == "0"
    (folder / "meta").unlink()
    with pytest.raises(DataError, match="meta: file not found"):
        spec_for_datamodule(build("cifar100", folder), "float32")


def test_compose_override_reaches_the_module(tmp_path):
    cfg = compose("kd_fashion_mnist", ["data=svhn", f"data.root={fake_svhn(tmp_path)}", "data.val_size=5"])
    assert OmegaConf.is_struct(cfg) and cfg.data.name == "svhn"
    assert DATASETS.get("svhn")(cfg.data).split_info()["sizes"]["val"] == 5
