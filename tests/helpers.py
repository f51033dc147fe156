"""Settings and checks the tests share, imported as ``from tests.helpers import ...`` (fixtures live in conftest)."""

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Small, fast settings for the embedded sets: no progress bars, few epochs.
QUICK = ["trainer.enable_progress_bar=false", "trainer.max_epochs=3", "teacher.recipe.epochs=3"]
# task=detr_kitti on a kitti_mini of 8 + 4 frames of sklearn digits at 48x144, tiny random DETRs, 1-epoch
# teacher: seconds per run.
DETR_TINY = ["data=kitti_mini", "data.num_train=8", "data.num_val=4", "data.objects=digits", "data.canvas=[48,144]",
             "data.image_size=[48,144]", "data.batch_size=4", "teacher.recipe.epochs=1", "trainer.fast_dev_run=true",
             "trainer.enable_progress_bar=false"]
# The smallest run of each kind that trains a method end to end (fast_dev_run) in a few seconds: task and overrides.
# Retrieval has none this small (a SPLADE teacher and a Lucene index): its methods have their own tests.
SMOKE = {
    "image_classification": ("kd_digits", ["trainer.fast_dev_run=true", "trainer.enable_progress_bar=false",
                                           "teacher.recipe.epochs=1"]),
    "detection": ("detr_kitti", DETR_TINY),
}


def has_fashion_mnist() -> bool:
    return (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file() or bool(os.environ.get("ZOO_FMNIST_ROOT"))


def write_idx(path: Path, array, truncate: int = 0) -> None:
    """``array`` as a gzipped unsigned-byte idx file (the Fashion-MNIST format), ``truncate`` bytes short."""
    import gzip

    import numpy as np

    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    body = header + np.asarray(array).astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as out:
        out.write(body[: len(body) - truncate])


def fake_fashion_mnist(root: Path, train: int = 60, test: int = 20, truncate_test_images: int = 0) -> None:
    """Random images and labels in the four Fashion-MNIST idx files under ``root``."""
    import numpy as np

    rng = np.random.default_rng(0)
    Path(root).mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (train, 28, 28)))
    write_idx(root / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, train))
    write_idx(root / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (test, 28, 28)), truncate_test_images)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, test))


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """``python -m http.server`` for ``folder`` on 127.0.0.1, in a thread: yields its URL and the list of paths it
    is asked for. Set NO_PROXY=127.0.0.1 first (the ``no_proxy`` fixture), so no proxy sees the requests."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/", asked
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def same_weights(a: Path, b: Path) -> bool:
    """Two weights files hold the same tensors under the same names."""
    import torch

    from zoo.weights import read_state_dict

    left, right = read_state_dict(a), read_state_dict(b)
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def photo_folder(root):
    """A 3-class ImageFolder of real photos (skimage), 4 train and 2 val images per class."""
    from PIL import Image
    from skimage import data as photos

    for c, name in enumerate(("astronaut", "coffee", "chelsea")):
        image = Image.fromarray(getattr(photos, name)())
        for split, count in (("train", 4), ("val", 2)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):  # different crops of the photo, so the images differ
                image.crop((i * 7, c * 5, 200 + i * 7, 200 + c * 5)).save(folder / f"{i}.png")


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
