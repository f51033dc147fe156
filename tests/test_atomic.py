"""zoo.atomic's folders: built aside, swapped in whole, and never losing a file the zoo did not write."""

import pytest

from zoo.atomic import WRITTEN, atomic_folder
from zoo.errors import ConfigError


def build(out, files: dict[str, str], may_replace=lambda _: True) -> None:
    with atomic_folder(out, may_replace) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def test_a_second_build_replaces_the_zoos_files_and_keeps_the_users(tmp_path):
    out = tmp_path / "export"
    build(out, {"model.onnx": "1", "old.json": "1"})
    assert (out / WRITTEN).read_text().split() == ["model.onnx", "old.json"]
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "plot.png").write_text("mine too")
    build(out, {"model.onnx": "2"})
    assert sorted(p.name for p in out.iterdir()) == [WRITTEN, "mine", "model.onnx", "notes.txt"]  # old.json: the zoo's
    assert (out / "model.onnx").read_text() == "2" and (out / "notes.txt").read_text() == "mine"
    assert (out / "mine" / "plot.png").read_text() == "mine too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp or old folder left


def test_a_folder_from_before_the_list_keeps_whatever_the_new_build_does_not_write(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "model.onnx").write_text("old")
    (out / "notes.txt").write_text("mine")
    build(out, {"model.onnx": "new"})
    assert (out / "model.onnx").read_text() == "new" and (out / "notes.txt").read_text() == "mine"


def test_a_users_file_in_the_way_of_a_new_one_is_an_error_that_changes_nothing(tmp_path):
    out = tmp_path / "export"
    build(out, {"model.onnx": "1"})
    (out / "card.yaml").write_text("mine")
    with pytest.raises(ConfigError, match="holds card.yaml, which the zoo did not write there"):
        build(out, {"model.onnx": "2", "card.yaml": "zoo"})
    assert (out / "model.onnx").read_text() == "1" and (out / "card.yaml").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_a_failed_build_leaves_the_old_folder_as_it_was(tmp_path):
    out = tmp_path / "export"
    build(out, {"model.onnx": "1"})
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        with atomic_folder(out, lambda _: True) as tmp:
            (tmp / "model.onnx").write_text("2")
            raise RuntimeError("the export check failed")
    assert (out / "model.onnx").read_text() == "1" and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
