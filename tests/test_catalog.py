"""Where model cards come from (zoo.catalog, zoo.mirrors): the built-in models/, $ZOO_HOME/models/ and mirrors
configured by ZOO_MIRRORS or `zoo mirror add=`, here folders served by http.server on 127.0.0.1 (no other
network). The mirrors are written by hand in zoo publish's layout; test_publish.py publishes real runs."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import serve_folder
from zoo import mirrors
from zoo.cards import InputSpec, ModelCard, WeightsSpec
from zoo.cli import main


def hand_mirror(folder: Path, name: str = "mlp.tiny.mirrored", version: str = "v1") -> bytes:
    """A mirror holding one card, as `zoo publish run=... to=folder` lays it out; returns the weights' bytes."""
    data = f"weights of {name} {version}".encode()
    weights = folder / name / f"{name}.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(data)
    card = ModelCard(name=name, arch="mlp.tiny", task="kd_digits", num_classes=10, input=InputSpec(shape=[1, 8, 8]),
                     weights=WeightsSpec(urls=[weights.as_uri()], sha256=hashlib.sha256(data).hexdigest(),
                                         size=len(data)))
    (folder / f"{name}.yaml").write_text(card.to_yaml())
    mirrors.update_index(folder, card, f"{name}/{weights.name}", version)
    return data


def user_card(home: Path, name: str) -> None:
    (home / "models").mkdir(exist_ok=True)
    card = ModelCard(name=name, arch="mlp.tiny", task="kd_digits", num_classes=10, input=InputSpec(shape=[1, 8, 8]),
                     weights=WeightsSpec(urls=["https://example.invalid/w.safetensors"]))
    (home / "models" / f"{name}.yaml").write_text(card.to_yaml())


def test_every_source_is_listed_with_where_it_comes_from(tmp_path, zoo_home, local_http, monkeypatch, capsys):
    user_card(zoo_home, "mlp.tiny.mine")
    hand_mirror(tmp_path / "by_env", "mlp.tiny.from_env")
    hand_mirror(tmp_path / "served", "mlp.tiny.served")
    monkeypatch.setenv("ZOO_MIRRORS", str(tmp_path / "by_env"))
    with serve_folder(tmp_path / "served") as (url, _):
        assert main(["mirror", f"add={url}"]) == 0
        assert f"{url}\t1 models" in capsys.readouterr().out
        assert main(["list", "models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "models (6):"
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert "built-in" in by_name["resnet50.mealv2_in1k"]
    assert "user" in by_name["mlp.tiny.mine"]
    assert f"mirror {(tmp_path / 'by_env').as_uri()}/  (version v1)" in by_name["mlp.tiny.from_env"]
    assert f"mirror {url}  (version v1)" in by_name["mlp.tiny.served"]
    assert mirrors.read_config() == {"mirrors": [url]}


def test_download_by_name_from_a_moved_mirror_uses_its_own_address(tmp_path, zoo_home, local_http, monkeypatch,
                                                                   capsys):
    """The card's own file:// URL points where it was published; the index's relative path finds the weights
    wherever the folder is served from now."""
    data = hand_mirror(tmp_path / "published")
    shutil.move(tmp_path / "published", tmp_path / "moved")
    with serve_folder(tmp_path / "moved") as (url, asked):
        monkeypatch.setenv("ZOO_MIRRORS", url)
        assert main(["download", "mlp.tiny.mirrored"]) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()).read_bytes() == data and "verified: sha256" in err
    assert asked == ["/index.json", "/mlp.tiny.mirrored.yaml", "/mlp.tiny.mirrored/mlp.tiny.mirrored.safetensors"]


def test_a_name_in_two_sources_is_an_error_naming_both(tmp_path, zoo_home, local_http, monkeypatch, capsys):
    user_card(zoo_home, "mlp.tiny.twice")
    hand_mirror(tmp_path / "mirror", "mlp.tiny.twice")
    with serve_folder(tmp_path / "mirror") as (url, _):
        monkeypatch.setenv("ZOO_MIRRORS", url)
        for argv in (["list", "models"], ["download", "mlp.tiny.twice"], ["download", "resnet50.mealv2_in1k"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert (f"error: model 'mlp.tiny.twice' is in two sources with different weights: user "
                    f"({zoo_home / 'models'}/mlp.tiny.twice.yaml) and mirror {url} (version v1)") in err
            assert "hint: keep one" in err


def test_replicas_of_one_mirror_are_one_student_with_fallbacks(tmp_path, zoo_home, local_http, monkeypatch,
                                                                capsys):
    data = hand_mirror(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "a" / "mlp.tiny.mirrored" / "mlp.tiny.mirrored.safetensors").unlink()  # a lags behind: no weights
    with serve_folder(tmp_path / "a") as (url_a, _), serve_folder(tmp_path / "b") as (url_b, asked_b):
        monkeypatch.setenv("ZOO_MIRRORS", f"{url_a},{url_b}")
        assert main(["list", "models"]) == 0
        assert f"mirror {url_a}  (version v1; also in mirror {url_b})" in capsys.readouterr().out
        assert main(["download", "mlp.tiny.mirrored"]) == 0
    assert Path(capsys.readouterr().out.strip()).read_bytes() == data
    assert asked_b[-1] == "/mlp.tiny.mirrored/mlp.tiny.mirrored.safetensors"


def test_an_unreachable_mirror_serves_what_was_last_read_and_offline_uses_the_cache(tmp_path, zoo_home, local_http,
                                                                                     monkeypatch, capsys):
    data = hand_mirror(tmp_path / "mirror")
    with serve_folder(tmp_path / "mirror") as (url, _):
        monkeypatch.setenv("ZOO_MIRRORS", url)
        assert main(["download", "mlp.tiny.mirrored"]) == 0
    capsys.readouterr()
    assert main(["list", "models"]) == 0  # the server is gone: the index as last read, with a warning
    out, err = capsys.readouterr()
    assert "mlp.tiny.mirrored" in out and "using its index as read on" in " ".join(err.split())
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_MIRRORS", f"{url} {tmp_path / 'never_read'}")
    assert main(["download", "mlp.tiny.mirrored"]) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()).read_bytes() == data
    assert main(["list", "models"]) == 0
    assert "offline, and its index was never read" in " ".join(capsys.readouterr().err.split())
    assert main(["download", "mlp.tiny.nowhere"]) == 2
    assert "not read: mirror" in capsys.readouterr().err
    assert main(["infer", "model=mlp.tiny.mirrored", f"inputs={tmp_path / 'x.npy'}"]) == 2  # downloaded, not exported
    assert "hint: export it first: zoo export model=mlp.tiny.mirrored" in capsys.readouterr().err


def test_a_card_that_disagrees_with_its_index_is_refused(tmp_path, zoo_home, local_http, monkeypatch, capsys):
    hand_mirror(tmp_path / "mirror")
    index = json.loads((tmp_path / "mirror" / "index.json").read_text())
    index["models"]["mlp.tiny.mirrored"]["sha256"] = "0" * 64
    (tmp_path / "mirror" / "index.json").write_text(json.dumps(index))
    monkeypatch.setenv("ZOO_MIRRORS", str(tmp_path / "mirror"))
    assert main(["download", "mlp.tiny.mirrored"]) == 2
    assert "disagrees with its index" in capsys.readouterr().err


def test_mirror_config_add_remove_and_mistakes(tmp_path, zoo_home, local_http, capsys):
    (tmp_path / "not_a_mirror").mkdir()
    assert main(["mirror", f"add={tmp_path / 'not_a_mirror'}"]) == 2
    assert "error: not added: cannot read" in capsys.readouterr().err
    assert not mirrors.config_path().exists()
    hand_mirror(tmp_path / "mirror")
    assert main(["mirror", f"add={tmp_path / 'mirror'}"]) == 0
    assert main(["mirror", f"add={tmp_path / 'mirror' / 'index.json'}"]) == 0  # the same mirror: kept once
    assert mirrors.read_config() == {"mirrors": [str(tmp_path / "mirror")]}
    assert main(["mirror", f"remove={(tmp_path / 'mirror').as_uri()}"]) == 0
    assert mirrors.read_config() == {"mirrors": []}
    assert main(["mirror", f"remove={tmp_path / 'mirror'}"]) == 2
    mirrors.config_path().write_text("mirror: [x]\n")
    assert main(["list", "models"]) == 2
    assert "unknown key 'mirror'" in capsys.readouterr().err


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_the_index_and_config_get_the_users_umask(tmp_path, zoo_home, umask):
    import os

    old = os.umask(umask)
    try:
        hand_mirror(tmp_path / "mirror")
        mirrors.add(str(tmp_path / "mirror"))
    finally:
        os.umask(old)
    for path in (tmp_path / "mirror" / "index.json", mirrors.config_path()):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
