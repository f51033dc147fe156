"""hf-hub:org/repo names and `zoo publish ... to=hf-hub:org/repo` against a fake Hub on 127.0.0.1: the Hub itself
cannot be reached from here.

The fake keeps each repository as a local folder per commit, laid out exactly as the Hub repository would be
(card.yaml, model.safetensors, record.json, README.md), plus its refs (branches and tags). It answers the
`/{repo}/resolve/{revision}/{file}` requests of huggingface_hub's real `hf_hub_download` with the headers that
function reads (X-Repo-Commit, ETag, Content-Length, X-Error-Code), so the real client, cache, revision handling
and offline mode are what is tested; only `HfApi`'s create_repo and upload_folder are replaced by a fake that
commits the uploaded folder (the upload protocol itself is huggingface_hub's, and not exercised here).
"""

import hashlib
import json
import shutil
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.helpers import same_weights
from zoo import catalog, hfhub
from zoo.cards import InputSpec, ModelCard, WeightsSpec
from zoo.cli import main
from zoo.errors import ConfigError, UnknownNameError
from zoo.hub import DownloadError


class FakeHub:
    """Repositories under ``root/<org>/<repo>/``: one folder per commit, and refs.json (branch or tag -> commit)."""

    def __init__(self, root: Path):
        self.root, self.asked = root, []

    def refs(self, repo_id: str) -> dict[str, str]:
        path = self.root / repo_id / "refs.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def commit(self, repo_id: str, folder: Path, tag: str | None = None) -> str:
        """A new commit on main: the previous tree with ``folder``'s files added or replaced."""
        parent = self.refs(repo_id).get("main")
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        oid = hashlib.sha1(json.dumps([parent, sorted((k, hashlib.sha256(v).hexdigest())
                                                      for k, v in files.items())]).encode()).hexdigest()
        tree = self.root / repo_id / oid
        if parent:
            shutil.copytree(self.root / repo_id / parent, tree)
        for name, data in files.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(data)
        refs = {**self.refs(repo_id), "main": oid, **({tag: oid} if tag else {})}
        (self.root / repo_id / "refs.json").write_text(json.dumps(refs))
        return oid

    def handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body: bool):
                hub.asked.append(self.path)
                parts = [unquote(p) for p in self.path.lstrip("/").split("/", 4)]
                if len(parts) != 5 or parts[2] != "resolve":
                    self.send_error(404)
                    return
                org, repo, _, revision, filename = parts
                refs = hub.refs(f"{org}/{repo}")
                commit = refs.get(revision, revision if (hub.root / org / repo / revision).is_dir() else None)
                path = hub.root / org / repo / str(commit) / filename
                error = ("RepoNotFound" if not refs else "RevisionNotFound" if commit is None
                         else None if path.is_file() else "EntryNotFound")
                if error:
                    self.send_response(404)
                    self.send_header("X-Error-Code", error)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def fake_hub(tmp_path, local_http, monkeypatch):
    """The fake Hub served on 127.0.0.1, huggingface_hub pointed at it (HF_ENDPOINT's constants), online, with a
    Hugging Face cache of the test's own."""
    import huggingface_hub
    from huggingface_hub import constants

    hub = FakeHub(tmp_path / "hub")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{httpd.server_port}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest's hub_offline turns it on for every test

    class FakeApi:
        def __init__(self, *args, **kwargs):
            pass

        def create_repo(self, repo_id, exist_ok=False, **kwargs):
            (hub.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

        def upload_folder(self, *, repo_id, folder_path, commit_message, **kwargs):
            return types.SimpleNamespace(oid=hub.commit(repo_id, Path(folder_path)), commit_message=commit_message)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    yield hub
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


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
