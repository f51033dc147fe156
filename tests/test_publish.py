"""zoo publish writes a mirror that the zoo then finds by name: served by http.server on 127.0.0.1 (no other
network), configured once, then listed, downloaded, built, exported and run by name. One quick kd_digits run
(method=ce) per session, shared with test_export.py (conftest's finished_digits_run)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import same_weights, serve_folder
from zoo.cards import load_card
from zoo.cli import main
from zoo.records import read_record

NAME = "mlp.tiny.kd_digits"  # <arch>.<task>: the name publish gives when name= does not say otherwise


@pytest.fixture
def digits_run(finished_digits_run) -> Path:
    return finished_digits_run


def test_a_published_student_is_used_by_name_from_a_served_mirror(digits_run, tmp_path, zoo_home, local_http, capsys):
    """Issue 25's walk-through from an empty ZOO_HOME, without copying a file by hand. The folder is served from
    another place than it was published to, so the card's own file:// URL is dead and only the mirror can serve."""
    import zoo
    from zoo.export.runtime import OnnxClassifier

    assert main(["publish", f"run={digits_run}", f"to={tmp_path / 'published'}"]) == 0
    assert f"published {NAME} (version {digits_run.name})" in capsys.readouterr().out
    shutil.move(tmp_path / "published", tmp_path / "served")
    with serve_folder(tmp_path / "served") as (url, asked):
        assert main(["mirror", f"add={url}"]) == 0
        assert main(["list", "models"]) == 0
        listed = [line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines() if NAME in line]
        assert listed == [[NAME, f"mirror {url}  (version {digits_run.name})"]]

        assert main(["download", NAME]) == 0
        path = Path(capsys.readouterr().out.strip())
        assert path.is_relative_to(zoo_home) and same_weights(path, digits_run / "student.safetensors")
        assert f"/{NAME}/{NAME}.safetensors" in asked

        model = zoo.create_model(NAME, pretrained=True, progress=False).eval()
        assert main(["export", f"model={NAME}"]) == 0
        capsys.readouterr()
    raw = tmp_path / "raw.npy"  # sklearn's own pixels (0..16): the export's preprocess.json normalises them
    from sklearn.datasets import load_digits

    np.save(raw, load_digits().images[:16, None])
    assert main(["infer", f"model={NAME}", f"inputs={raw}"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    clf = OnnxClassifier(zoo_home / "exports" / NAME / "default")
    with torch.no_grad():
        expected = model(torch.from_numpy(clf.preprocess(np.load(raw)))).argmax(1).tolist()
    assert [int(row.split("\t")[1]) for row in rows] == expected


def test_publish_writes_a_complete_card_and_index_and_replaces_by_version(digits_run, tmp_path, capsys):
    mirror = tmp_path / "mirror"
    assert main(["publish", f"run={digits_run}", f"to={mirror}", "base_url=https://zoo.example/m/"]) == 0
    card = load_card(mirror / f"{NAME}.yaml")
    weights = mirror / NAME / f"{NAME}.safetensors"
    assert card.weights.urls == [f"https://zoo.example/m/{NAME}/{NAME}.safetensors"]
    assert card.weights.size == weights.stat().st_size and len(card.weights.sha256) == 64
    record = read_record(digits_run / "record.json")
    assert all(m.source == f"record:{record.run_id}" for m in card.metrics)
    assert read_record(mirror / NAME / "record.json") == record
    entry = json.loads((mirror / "index.json").read_text())["models"][NAME]
    assert {k: entry[k] for k in ("card", "weights", "version", "sha256", "size")} == {
        "card": f"{NAME}.yaml", "weights": f"{NAME}/{NAME}.safetensors", "version": record.run_id,
        "sha256": card.weights.sha256, "size": card.weights.size}

    shutil.copytree(digits_run, tmp_path / "runs" / "20990101-000000-000000-aaaa")  # "a later run", same student
    capsys.readouterr()
    assert main(["publish", f"run={tmp_path / 'runs' / '20990101-000000-000000-aaaa'}", f"to={mirror}"]) == 0
    assert f"replacing version {record.run_id}" in capsys.readouterr().out
    assert main(["publish", f"run={digits_run}", f"to={mirror}", "name=mlp.tiny.other"]) == 0
    index = json.loads((mirror / "index.json").read_text())["models"]
    assert sorted(index) == ["mlp.tiny.kd_digits", "mlp.tiny.other"]
    assert index[NAME]["version"] == "20990101-000000-000000-aaaa"
    assert main(["publish", f"run={digits_run}", f"to={mirror}", "name=resnet18.x"]) == 2
    assert "must be <arch>.<tag> with the run's arch 'mlp.tiny'" in capsys.readouterr().err


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_published_files_get_the_users_umask(digits_run, tmp_path, umask):
    """Issue 24: a mirror must be servable by another user's web server, so nothing it holds may be private."""
    old = os.umask(umask)
    try:
        assert main(["publish", f"run={digits_run}", f"to={tmp_path / 'mirror'}"]) == 0
    finally:
        os.umask(old)
    files = [tmp_path / "mirror" / p for p in ("index.json", f"{NAME}.yaml", f"{NAME}/{NAME}.safetensors",
                                               f"{NAME}/record.json")]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(0o666 & ~umask) for p in files}
    for folder in (tmp_path / "mirror", tmp_path / "mirror" / NAME):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    assert not [p for p in (tmp_path / "mirror").rglob(".*")]  # no temp file left behind


def test_best_publishes_the_leaderboards_best_run_found(digits_run, tmp_path, monkeypatch, capsys):
    """best=RUNS_DIR: per leaderboard task, its best run whose folder is there; the others say why not."""
    from zoo import leaderboard
    from zoo.records import Record

    record = read_record(digits_run / "record.json")
    records = {"kd_digits": [record, Record(**{**record.__dict__, "run_id": "gone", "metrics": {"test/acc": 1.0}})],
               "detr_kitti": []}
    monkeypatch.setattr(leaderboard, "load_records", lambda: records)
    runs = tmp_path / "runs"
    assert main(["publish", f"best={runs}", f"to={tmp_path / 'mirror'}"]) == 2
    assert "no leaderboard run of any task" in capsys.readouterr().err
    shutil.copytree(digits_run, runs / "kd_digits" / digits_run.name)
    assert main(["publish", f"best={runs}", f"to={tmp_path / 'mirror'}"]) == 0
    out, err = capsys.readouterr()
    assert f"kd_digits: {digits_run.name}, test/acc {record.metrics['test/acc']:.4f} (#2 on the leaderboard" in err
    assert "detr_kitti: skipped, a detection task" in err
    assert f"published {NAME}" in out


def test_publish_needs_a_finished_run(tmp_path, capsys):
    assert main(["publish", f"run={tmp_path}", f"to={tmp_path / 'm'}"]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert main(["publish", f"to={tmp_path / 'm'}"]) == 2
    assert "takes exactly one of run= or best=" in capsys.readouterr().err
