"""Shared fixtures. Every test gets its own ZOO_HOME and its own run folders; the stores of recipe-trained weights in it
(``teachers/``, ``student_inits/``) are shared by the whole pytest run, so a recipe teacher is trained once per run,
not once per test. Sharing them is safe: a stored file is found by a hash of everything it depends on and checked
against its sha256 before use (``zoo.recipes``). A test that must see an empty store (it counts, corrupts or times
teacher training) is marked ``own_teachers``. ``ZOO_TEST_STORES=<a ZOO_HOME>`` shares that home's stores instead
(e.g. ``~/.cache/zoo``), so slow tests reuse teachers a ``zoo reproduce`` already trained. transformers never reaches
the Hugging Face Hub in a test (``hub_offline``); ``fake_hub`` serves one on 127.0.0.1 (``tests.helpers.FakeHub``)
for the tests of what is loaded from it.
"""

import os
import threading
import types
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

SHARED_STORES = ("teachers", "student_inits")


@pytest.fixture(scope="session")
def shared_zoo_home(tmp_path_factory) -> Path:
    """The ZOO_HOME whose weight stores every test shares."""
    if os.environ.get("ZOO_TEST_STORES"):
        return Path(os.environ["ZOO_TEST_STORES"]).expanduser()
    return tmp_path_factory.mktemp("shared_zoo_home")


@pytest.fixture(autouse=True)
def zoo_home(request, tmp_path_factory, monkeypatch, shared_zoo_home) -> Path:
    home = tmp_path_factory.mktemp("zoo_home")
    if request.node.get_closest_marker("own_teachers") is None:
        for store in SHARED_STORES:
            (shared_zoo_home / store).mkdir(exist_ok=True)
            (home / store).symlink_to(shared_zoo_home / store, target_is_directory=True)
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.delenv("ZOO_RUN_ID", raising=False)
    monkeypatch.delenv("ZOO_MIRRORS", raising=False)  # a developer's own mirrors are no source of a test's cards
    return home


@pytest.fixture
def finished_digits_run(tmp_path_factory) -> Path:
    """A finished quick kd_digits run folder (method=ce), trained once per session and shared with test_export.py."""
    from tests.test_export import quick_digits_run

    return quick_digits_run(tmp_path_factory.getbasetemp() / "export_shared")


@pytest.fixture
def local_http(monkeypatch) -> None:
    """Online, and requests to 127.0.0.1 (``tests.helpers.serve_folder``) go straight there, past any proxy."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for var in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def runs(tmp_path) -> list[str]:
    """Overrides that send run folders to this test's temp dir."""
    return [f"run.root={tmp_path / 'runs'}"]


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """transformers' Hub client offline (its own switch, read at import, not the environment variable, which would
    also take the zoo's own downloads offline): a Hub name then fails at once instead of after a minute of retries
    on a machine without internet."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def fake_hub(tmp_path, local_http, monkeypatch):
    """The fake Hub served on 127.0.0.1, huggingface_hub pointed at it (HF_ENDPOINT's constants), online, with a
    Hugging Face cache of the test's own."""
    import huggingface_hub
    from huggingface_hub import constants

    from tests.helpers import FakeHub

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
