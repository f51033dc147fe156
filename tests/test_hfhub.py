"""hf-hub:org/repo names and `zoo publish ... to=hf-hub:org/repo` against a fake Hub on 127.0.0.1: the Hub itself
cannot be reached from here.

The fake (``tests.helpers.FakeHub``, served by conftest's ``fake_hub``) keeps each repository as a local folder per
commit, laid out exactly as the Hub repository would be (card.yaml, model.safetensors, record.json, README.md), plus
its refs (branches and tags). It answers the
`/{repo}/resolve/{revision}/{file}` requests of huggingface_hub's real `hf_hub_download` with the headers that
function reads (X-Repo-Commit, ETag, Content-Length, X-Error-Code), so the real client, cache, revision handling
and offline mode are what is tested; only `HfApi`'s create_repo and upload_folder are replaced by a fake that
commits the uploaded folder (the upload protocol itself is huggingface_hub's, and not exercised here).
"""

import hashlib
from pathlib import Path

import pytest

from tests.helpers import FakeHub, same_weights
from zoo import catalog, hfhub
from zoo.cards import InputSpec, ModelCard, WeightsSpec
from zoo.cli import main
from zoo.errors import ConfigError, UnknownNameError
from zoo.hub import DownloadError


def push(hub: FakeHub, repo_id: str, weights: bytes, tag: str | None = None, tmp: Path | None = None) -> str:
    """A hand-made commit in the layout zoo publish uploads (without a run): card.yaml + model.safetensors."""
    stage = tmp / f"stage-{hashlib.sha256(weights).hexdigest()[:8]}"
    stage.mkdir()
    (stage / "model.safetensors").write_bytes(weights)
    card = ModelCard(name="mlp.tiny.hub", arch="mlp.tiny", task="kd_digits", num_classes=10,
                     input=InputSpec(shape=[1, 8, 8]),
                     weights=WeightsSpec(urls=[f"hf://{repo_id}/model.safetensors"],
                                         sha256=hashlib.sha256(weights).hexdigest(), size=len(weights)))
    (stage / "card.yaml").write_text(card.to_yaml())
    return hub.commit(repo_id, stage, tag)


def test_publish_to_the_hub_then_download_and_build_by_name(finished_digits_run, fake_hub, tmp_path, capsys):
    digits_run = finished_digits_run
    import zoo
    from zoo.weights import load_weights

    assert main(["publish", f"run={digits_run}", "to=hf-hub:org/student"]) == 0
    commit = fake_hub.refs("org/student")["main"]
    out = capsys.readouterr().out
    assert f"hf-hub:org/student@{commit}" in out and f"zoo download hf-hub:org/student@{commit}" in out
    tree = fake_hub.root / "org" / "student" / commit
    assert sorted(p.name for p in tree.iterdir()) == ["README.md", "card.yaml", "model.safetensors", "record.json"]
    assert "zoo download hf-hub:org/student" in (tree / "README.md").read_text()

    assert main(["download", "hf-hub:org/student"]) == 0
    out, err = capsys.readouterr()
    path = Path(out.strip())
    assert path == tmp_path / "hf_cache" / "models--org--student" / "snapshots" / commit / "model.safetensors"
    assert same_weights(path, digits_run / "student.safetensors") and err.startswith("verified: sha256")
    model = zoo.create_model("hf-hub:org/student", pretrained=True)
    reference = zoo.create_model("mlp.tiny", num_classes=10, input_shape=(1, 8, 8))
    load_weights(reference, digits_run / "student.safetensors")
    assert all((a == b).all() for a, b in zip(model.state_dict().values(), reference.state_dict().values(),
                                              strict=True))
    assert main(["publish", f"run={digits_run}", "to=hf-hub:org/student@v2"]) == 2
    assert "without @v2" in capsys.readouterr().err


def test_a_revision_pins_card_and_weights_to_one_commit(fake_hub, tmp_path):
    first = push(fake_hub, "org/r", b"weights one", tag="v1", tmp=tmp_path)
    second = push(fake_hub, "org/r", b"weights two", tmp=tmp_path)
    for name, expected in (("hf-hub:org/r", b"weights two"), ("hf-hub:org/r@v1", b"weights one"),
                           (f"hf-hub:org/r@{first}", b"weights one"), ("hf-hub:org/r@main", b"weights two")):
        card, path = catalog.download(name)
        assert path.read_bytes() == expected, name
    card = catalog.get_card("hf-hub:org/r")
    assert card.weights.urls == [f"hf://org/r/model.safetensors@{second}"]
    push(fake_hub, "org/r", b"weights three", tmp=tmp_path)  # a push between reading the card and the weights
    assert catalog.fetch("hf-hub:org/r", card).read_bytes() == b"weights two"
    assert catalog.export_dir("hf-hub:org/r@v1").parent.name == "hf-hub--org--r@v1"


def test_hub_names_that_do_not_resolve_fail_in_one_line(fake_hub, tmp_path, capsys):
    push(fake_hub, "org/r", b"weights", tmp=tmp_path)
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "README.md").write_text("not a zoo student")
    fake_hub.commit("org/bare", tmp_path / "bare")
    for name, message in (("hf-hub:org/none", "no such Hub repository"), ("hf-hub:org/r@nope", "no such revision"),
                          ("hf-hub:org/bare", "not laid out as a zoo student"), ("hf-hub:org", "is not a Hub name")):
        assert main(["download", name]) == 2, name
        assert message in capsys.readouterr().err, name
    with pytest.raises(ConfigError):
        hfhub.parse("hf-hub:org/r@")
    assert hfhub.parse("hf-hub:org/r@v1.0") == ("org/r", "v1.0")


@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "ZOO_OFFLINE"])
def test_offline_reads_only_the_hugging_face_cache(fake_hub, tmp_path, monkeypatch, switch):
    from huggingface_hub import constants

    first = push(fake_hub, "org/r", b"weights one", tag="v1", tmp=tmp_path)
    push(fake_hub, "org/r", b"weights two", tag="v2", tmp=tmp_path)
    assert catalog.download("hf-hub:org/r")[1].read_bytes() == b"weights two"
    assert catalog.download(f"hf-hub:org/r@{first}")[1].read_bytes() == b"weights one"
    asked = len(fake_hub.asked)
    monkeypatch.setenv(switch, "1")
    if switch == "HF_HUB_OFFLINE":  # huggingface_hub reads it at import: set what it read
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert catalog.download("hf-hub:org/r")[1].read_bytes() == b"weights two"
    assert catalog.download(f"hf-hub:org/r@{first}")[1].read_bytes() == b"weights one"
    with pytest.raises(DownloadError, match="offline, and hf-hub:org/r@v1 is not in the Hugging Face cache"):
        catalog.download("hf-hub:org/r@v1")  # a tag never read online: the cache cannot know its commit
    assert len(fake_hub.asked) == asked


def test_a_damaged_cached_copy_is_fetched_again_and_a_wrong_file_refused(fake_hub, tmp_path):
    commit = push(fake_hub, "org/r", b"weights one", tmp=tmp_path)
    _, path = catalog.download("hf-hub:org/r")
    path.resolve().write_bytes(b"weights 0ne")  # the blob behind the snapshot's link
    assert catalog.download("hf-hub:org/r")[1].read_bytes() == b"weights one"
    (fake_hub.root / "org" / "r" / commit / "model.safetensors").write_bytes(b"weights 1ne")  # the Hub serves junk
    path.resolve().write_bytes(b"weights 0ne")
    with pytest.raises(DownloadError, match="fail their check: sha256"):
        catalog.download("hf-hub:org/r")
    with pytest.raises(UnknownNameError):
        catalog.get_card("hf-hub:org/absent")


def test_a_paper_vit_reads_its_timm_weights_from_the_hub_by_name(fake_hub, tmp_path):
    """The paper's ViTs (``vit_base_patch16_224.mae``, ``deit_base_patch16_224.fb_in1k``, ...) are timm names whose
    weights timm fetches from the Hub (``timm/<name>``, model.safetensors). A small one of the same family, built
    by the same builder, served by the fake Hub: every weight but the new head arrives as served."""
    import timm
    import torch
    from safetensors.torch import save_file

    from zoo.archs.vit import _timm_vit

    name = "vit_tiny_patch16_224.augreg_in21k"
    torch.manual_seed(0)
    served = timm.create_model(name, pretrained=False).state_dict()
    stage = tmp_path / "stage"
    stage.mkdir()
    save_file(served, str(stage / "model.safetensors"))
    fake_hub.commit(f"timm/{name}", stage)
    model = _timm_vit(name)(10, (3, 224, 224), pretrained=True)
    got = model.state_dict()
    assert {key for key in served if key not in got or not torch.equal(got[key], served[key])} == {
        "head.weight", "head.bias"}  # a 10-way head, new
    assert any(path.endswith(f"timm/{name}/resolve/main/model.safetensors") for path in fake_hub.asked)
