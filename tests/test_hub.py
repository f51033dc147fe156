"""zoo.hub and zoo.models_api against a local HTTP server on 127.0.0.1 (no other network).

The server serves files from a temp folder, honours Range (unless told not to), can cut a transfer after N
bytes, fail the next requests with a status, or trickle its body out slowly; it logs every request.
"""

import hashlib
import multiprocessing
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from zoo import hub
from zoo.cards import InputSpec, ModelCard, WeightsSpec
from zoo.errors import UnknownNameError

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB, so a cut or a resume lands mid-file


class Server:
    def __init__(self, root: Path):
        self.root = root
        self.log: list[dict] = []
        self.cut_after: int | None = None  # the next response stops after this many body bytes
        self.cut_always = False  # ... and every later one too (a mirror that serves a truncated file)
        self.send_length = True  # False: no Content-Length, the body ends when the connection closes
        self.fail_next: list[int] = []  # statuses for the next requests, in order
        self.honour_range = True
        self.trickle_s = 0.0  # sleep between 64 KiB blocks
        self.httpd: ThreadingHTTPServer | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a stuck client cannot hold a handler thread past teardown

            def do_GET(self):
                server.log.append({"path": self.path, "range": self.headers.get("Range")})
                if server.fail_next:
                    self.send_error(server.fail_next.pop(0))
                    return
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start, status = 0, 200
                requested = self.headers.get("Range")
                if requested and server.honour_range:
                    start, status = int(requested.removeprefix("bytes=").split("-")[0]), 206
                body = data[start:]
                self.send_response(status)
                if server.send_length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.close_connection = True
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if server.cut_after is not None:
                    body = body[:server.cut_after]
                    server.cut_after = server.cut_after if server.cut_always else None
                    self.close_connection = True
                try:
                    for offset in range(0, len(body), 1 << 16):
                        self.wfile.write(body[offset:offset + (1 << 16)])
                        time.sleep(server.trickle_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on this body (a refused Content-Length): no traceback on stderr

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy from the environment must not see these requests
    for var in hub.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "BACKOFF_S", 0.01)
    root = tmp_path / "served"
    root.mkdir()
    (root / "w.bin").write_bytes(PAYLOAD)
    state = Server(root)
    state.httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    state.httpd.daemon_threads = True
    thread = threading.Thread(target=state.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    state.httpd.shutdown()
    state.httpd.server_close()
    thread.join(timeout=5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_card(urls, sha256=None, name="mlp.tiny.test_hub", fmt="pth") -> ModelCard:
    return ModelCard(name=name, arch="mlp.tiny", task="kd_digits", num_classes=10,
                     input=InputSpec(shape=[1, 8, 8]), weights=WeightsSpec(urls=urls, sha256=sha256, format=fmt))


def test_download_verifies_and_caches(server, zoo_home):
    card = make_card([server.url("w.bin")], sha256=sha(PAYLOAD))
    path = hub.download(card, progress=True)
    assert path == zoo_home / "weights" / card.name / "w.bin"
    assert path.read_bytes() == PAYLOAD
    assert hub.download(card, progress=False) == path
    assert len(server.log) == 1  # the second call was served from the cache


def test_cut_transfer_is_resumed_with_range(server):
    card = make_card([server.url("w.bin")], sha256=sha(PAYLOAD))
    server.cut_after = 200_000
    with pytest.raises(hub.DownloadError, match="stopped at 200000|connection failed"):
        hub.download(card, progress=False, retries=0)  # like a killed process: the .part stays
    part = hub.cached_path(card).with_name("w.bin.part")
    kept = part.stat().st_size
    assert 0 < kept <= 200_000  # what arrived, less at most one unwritten chunk
    path = hub.download(card, progress=False)
    assert server.log[-1]["range"] == f"bytes={kept}-"
    assert path.read_bytes() == PAYLOAD and not part.exists()


def test_cut_transfer_is_retried_within_one_call(server):
    server.cut_after = 100_000
    path = hub.download(make_card([server.url("w.bin")], sha256=sha(PAYLOAD)), progress=False)
    assert server.log[0]["range"] is None and server.log[1]["range"].startswith("bytes=")
    assert len(server.log) == 2
    assert path.read_bytes() == PAYLOAD


def test_server_ignoring_range_gets_a_full_download(server):
    card = make_card([server.url("w.bin")], sha256=sha(PAYLOAD))
    part = hub.cached_path(card).with_name("w.bin.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from some earlier run")
    server.honour_range = False
    assert hub.download(card, progress=False).read_bytes() == PAYLOAD
    assert server.log[0]["range"] == f"bytes={len(b'stale bytes from some earlier run')}-"


def test_5xx_is_retried(server):
    server.fail_next = [503, 502]
    assert hub.download(make_card([server.url("w.bin")]), progress=False).read_bytes() == PAYLOAD
    assert len(server.log) == 3


def test_wrong_checksum_is_rejected_and_nothing_is_left(server, zoo_home):
    card = make_card([server.url("w.bin")], sha256=sha(b"another file"))
    with pytest.raises(hub.DownloadError) as err:
        hub.download(card, progress=False)
    assert card.name in str(err.value) and server.url("w.bin") in str(err.value) and "sha256" in str(err.value)
    folder = zoo_home / "weights" / card.name
    assert not folder.exists() or not any(folder.iterdir())  # no file, no .part, no first_download.json


def test_first_mirror_404_then_second_is_used(server):
    card = make_card([server.url("missing.bin"), server.url("w.bin")], sha256=sha(PAYLOAD))
    assert hub.download(card, progress=False).read_bytes() == PAYLOAD
    assert [r["path"] for r in server.log] == ["/missing.bin", "/w.bin"]


def test_all_mirrors_failing_lists_each(server):
    card = make_card([server.url("a.bin"), server.url("b.bin")])
    with pytest.raises(hub.DownloadError) as err:
        hub.download(card, progress=False)
    assert f"{server.url('a.bin')}: HTTP 404" in str(err.value) and f"{server.url('b.bin')}: HTTP 404" in str(err.value)


@pytest.mark.parametrize("var", hub.OFFLINE_VARS)
def test_offline_uses_only_the_cache(server, monkeypatch, var):
    card = make_card([server.url("w.bin")], sha256=sha(PAYLOAD))
    monkeypatch.setenv(var, "1")
    with pytest.raises(hub.DownloadError, match="offline") as err:
        hub.download(card, progress=False)
    assert f"zoo download {card.name}" in err.value.hint
    assert server.log == []
    monkeypatch.delenv(var)
    path = hub.download(card, progress=False)
    monkeypatch.setenv(var, "1")
    assert hub.download(card, progress=False) == path
    assert len(server.log) == 1


def test_unknown_hash_is_recorded_then_tampering_is_caught(server, monkeypatch):
    import json

    card = make_card([server.url("w.bin")], sha256=None)
    path = hub.download(card, progress=False)
    pinned = json.loads((path.parent / "first_download.json").read_text())
    assert pinned["sha256"] == sha(PAYLOAD) and pinned["verified"] is False
    path.write_bytes(PAYLOAD[:-1] + b"!")  # a changed cached file
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(hub.DownloadError, match="fail their sha256 check"):
        hub.download(card, progress=False)
    monkeypatch.delenv("ZOO_OFFLINE")
    path.write_bytes(b"tampered")
    assert hub.download(card, progress=False).read_bytes() == PAYLOAD  # fetched again, checked against the record
    assert len(server.log) == 2
    (server.root / "w.bin").write_bytes(b"the mirror now serves something else")
    path.unlink()
    with pytest.raises(hub.DownloadError, match="sha256 mismatch"):
        hub.download(card, progress=False)


def _download_in_child(card: ModelCard, home: str, barrier, results) -> None:
    import os

    os.environ["ZOO_HOME"] = home
    from zoo import hub as child_hub

    barrier.wait(timeout=60)  # both processes are imported and start downloading together
    results.put(str(child_hub.download(card, progress=False)))


def test_two_processes_leave_one_good_file(server, zoo_home):
    server.trickle_s = 0.05  # ~0.4 s per transfer, so the two really overlap
    card = make_card([server.url("w.bin")], sha256=sha(PAYLOAD))
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    workers = [spawn.Process(target=_download_in_child, args=(card, str(zoo_home), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    paths = {results.get(timeout=5) for _ in workers}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.bin"]
    assert len(server.log) == 1  # the lock made the second process wait and reuse the first one's file


def test_file_and_hf_mirrors(server, tmp_path, monkeypatch):
    local = tmp_path / "local.bin"
    local.write_bytes(PAYLOAD)
    assert hub.download(make_card([local.as_uri()], name="a.file"), progress=False).read_bytes() == PAYLOAD

    assert hub.parse_hf_url("hf://org/repo/sub/w.safetensors@v1.0") == ("org/repo", "sub/w.safetensors", "v1.0")
    assert hub.parse_hf_url("hf://org/repo@main/w.pth") == ("org/repo", "w.pth", "main")
    assert hub.parse_hf_url("hf://org/repo/w.pth") == ("org/repo", "w.pth", None)
    calls = []

    def fake_hf_hub_download(repo_id, filename, revision=None):  # no network: the HF cache is this file
        calls.append((repo_id, filename, revision))
        return str(local)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    card = make_card(["hf://org/repo/sub/w.safetensors@v1.0"], sha256=sha(PAYLOAD), name="a.hf", fmt="safetensors")
    path = hub.download(card, progress=False)
    assert path.name == "w.safetensors" and path.read_bytes() == PAYLOAD
    assert calls == [("org/repo", "sub/w.safetensors", "v1.0")]
    assert server.log == []


@pytest.fixture
def models_dir(zoo_home) -> Path:
    """The user's card folder ($ZOO_HOME/models/), for the test's own cards."""
    folder = zoo_home / "models"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("data_parallel", [False, True])
def test_create_model_pretrained_matches_saved_model(server, models_dir, data_parallel):
    import torch

    from zoo.archs import create
    from zoo.models_api import create_model
    from zoo.weights import save_weights

    torch.manual_seed(0)
    saved = create("mlp.tiny", 10, (1, 8, 8)).eval()
    if data_parallel:  # how MEAL-V2 released its .pth files: keys saved from nn.DataParallel
        torch.save({f"module.{k}": v for k, v in saved.state_dict().items()}, server.root / "student.pth")
        weights, fmt = server.root / "student.pth", "pth"
    else:
        weights, fmt = save_weights(saved, server.root / "student.safetensors"), "safetensors"
    card = make_card([server.url(weights.name)], sha256=sha(weights.read_bytes()), name="mlp.tiny.kd_test", fmt=fmt)
    (models_dir / "mlp.tiny.kd_test.yaml").write_text(card.to_yaml())

    model = create_model("mlp.tiny.kd_test", pretrained=True, progress=False).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), saved(x))
    assert not torch.equal(create_model("mlp.tiny.kd_test")(x), saved(x))  # pretrained=False: fresh weights


def test_create_model_plain_arch_and_unknown_names(models_dir):
    from zoo.errors import ConfigError
    from zoo.models_api import create_model

    assert create_model("mlp.tiny", num_classes=3, input_shape=(1, 8, 8)).head.out_features == 3
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("mlp.tiny")
    with pytest.raises(UnknownNameError, match="neither a model card nor an arch"):
        create_model("mlp.tinny")
    assert create_model("cifar_resnet.d1-2-1", num_classes=3, input_shape=(1, 8, 8)).head.out_features == 3
    with pytest.raises(UnknownNameError, match=r"names follow cifar_resnet\.d<a>"):  # the family's own message
        create_model("cifar_resnet.d1-x-1", num_classes=3, input_shape=(1, 8, 8))


def test_download_command_prints_the_path(server, models_dir, capsys):
    from zoo.cli import main

    card = make_card([server.url("w.bin")], sha256=sha(PAYLOAD), name="mlp.tiny.cmd")
    (models_dir / "mlp.tiny.cmd.yaml").write_text(card.to_yaml())
    assert main(["download", "mlp.tiny.cmd"]) == 0
    assert capsys.readouterr().out.strip() == str(hub.cached_path(card))
    assert main(["download"]) == 2 and "zoo download needs a NAME" in capsys.readouterr().err


def test_shipped_cards_load_and_name_registered_archs():
    from zoo.cards import load_card
    from zoo.paths import data_dir
    from zoo.registry import ARCHS

    for path in sorted(data_dir("models").glob("*.yaml")):
        card = load_card(path)
        assert card.arch in ARCHS.declared(), f"{path.name}: arch '{card.arch}' is not registered"
        assert hub.cached_path(card).suffix == f".{card.weights.format}"


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_a_truncated_file_behind_a_card_without_hash_is_never_trusted(server, zoo_home, tmp_path, fmt):
    """With sha256 null there is nothing to compare with, so the file's own framing is checked before its hash is
    recorded: a weights file cut short on the mirror is deleted, and no first_download.json trusts it."""
    import torch
    from safetensors.torch import save_file

    whole = tmp_path / f"w.{fmt}"
    state = {"weight": torch.arange(600, dtype=torch.float32).reshape(20, 30)}
    save_file(state, whole) if fmt == "safetensors" else torch.save(state, whole)
    data = whole.read_bytes()
    (server.root / "cut.bin").write_bytes(data[:len(data) - 700])
    (server.root / "whole.bin").write_bytes(data)
    with pytest.raises(hub.DownloadError, match="truncated"):
        hub.download(make_card([server.url("cut.bin")], fmt=fmt, name=f"mlp.tiny.cut_{fmt}"), progress=False)
    assert not list((zoo_home / "weights").glob(f"mlp.tiny.cut_{fmt}/*"))
    path = hub.download(make_card([server.url("whole.bin")], fmt=fmt, name=f"mlp.tiny.whole_{fmt}"), progress=False)
    assert path.read_bytes() == data and (path.parent / "first_download.json").is_file()


def legacy_pth(path: Path) -> bytes:
    """A legacy (pickle, not zip) .pth file: no framing to tell a truncated one from a whole one."""
    import torch

    torch.save({"weight": torch.arange(600, dtype=torch.float32)}, path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


def test_a_truncated_transfer_behind_a_card_without_hash_is_refused(server, zoo_home, tmp_path):
    """Issue 24: a card with sha256 null (all shipped cards) and a mirror that always cuts the transfer short of its
    Content-Length: retried, then refused; nothing is kept or pinned."""
    data = legacy_pth(tmp_path / "w.pth")
    (server.root / "legacy.pth").write_bytes(data)
    server.cut_after, server.cut_always = len(data) - 100, True
    card = make_card([server.url("legacy.pth")], name="mlp.tiny.cut_legacy")
    with pytest.raises(hub.DownloadError, match="stopped at|connection failed"):
        hub.download(card, progress=False, retries=1)
    folder = zoo_home / "weights" / card.name
    assert not folder.exists() or [p.name for p in folder.iterdir()] == ["legacy.pth.part"]  # for a later resume


def test_a_size_the_server_contradicts_is_refused_at_once(server, zoo_home):
    card = make_card([server.url("w.bin")], name="mlp.tiny.sized")
    card.weights.size = len(PAYLOAD) + 1
    with pytest.raises(hub.DownloadError, match=r"announces 524288 bytes \(Content-Length\), the card says 524289"):
        hub.download(card, progress=False)
    assert len(server.log) == 1  # another file, not a transient failure: no retry
    assert not (zoo_home / "weights" / card.name).exists()


def test_a_file_without_reference_hash_is_called_unverified(server, zoo_home, models_dir, tmp_path, capsys):
    """Without Content-Length and without sha256 a cut-short legacy .pth cannot be told from a whole one: it is
    kept, but its hash is pinned as unverified, never as verified, and `zoo download` says so."""
    import json

    from zoo.cli import main

    data = legacy_pth(tmp_path / "w.pth")
    (server.root / "w.pth").write_bytes(data)
    server.send_length, server.cut_after = False, len(data) - 100
    card = make_card([server.url("w.pth")], name="mlp.tiny.unverified")
    (models_dir / f"{card.name}.yaml").write_text(card.to_yaml())
    (zoo_home / "weights" / card.name).mkdir(parents=True)
    (zoo_home / "weights" / card.name / "verified.json").write_text('{"sha256": "0"}')  # an older zoo's claim
    assert main(["download", card.name]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(hub.cached_path(card))
    assert "unverified: the card publishes no sha256" in err and "verified: sha256" not in err
    pinned = json.loads((zoo_home / "weights" / card.name / hub.RECORD).read_text())
    assert pinned["verified"] is False and pinned["sha256"] == sha(data[:-100])
    assert not (zoo_home / "weights" / card.name / "verified.json").exists()


def test_a_card_with_hash_says_verified(server, models_dir, capsys):
    from zoo.cli import main

    card = make_card([server.url("w.bin")], sha256=sha(PAYLOAD), name="mlp.tiny.verified")
    (models_dir / f"{card.name}.yaml").write_text(card.to_yaml())
    assert main(["download", card.name]) == 0
    assert f"verified: sha256 {sha(PAYLOAD)} from the model card" in capsys.readouterr().err
