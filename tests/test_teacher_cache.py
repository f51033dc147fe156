import json

import numpy as np
import torch

from zoo.teacher_cache import TeacherOutputCache, teacher_fingerprint

KEY = {"teachers": "t1", "data": "d1", "transform": "identity", "split": "train", "features": ""}


def outputs(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"logits": torch.randn(n, 1, 10, generator=g)}


def test_round_trip_and_counts(tmp_path):
    cache = TeacherOutputCache(tmp_path, KEY, num_samples=20)
    idx = torch.tensor([3, 7, 11])
    assert cache.lookup(idx) is None
    out = outputs(3)
    cache.store(idx, out)
    cache.flush()
    again = TeacherOutputCache(tmp_path, KEY, num_samples=20)  # a later run
    got = again.lookup(idx)
    assert torch.equal(got["logits"], out["logits"])
    assert again.lookup(torch.tensor([3, 4])) is None  # 4 was never stored
    assert again.stats == {"hits": 3, "misses": 2, "corrupt": 0}


def test_corrupt_row_is_detected_not_used(tmp_path):
    cache = TeacherOutputCache(tmp_path, KEY, num_samples=10)
    idx = torch.arange(4)
    cache.store(idx, outputs(4))
    cache.flush()
    logits = np.load(cache.dir / "logits.npy", mmap_mode="r+")
    logits[2, 0, 5] += 1e-3  # one silently changed value on disk
    logits.flush()
    reopened = TeacherOutputCache(tmp_path, KEY, num_samples=10)
    assert reopened.lookup(idx) is None and reopened.stats["corrupt"] == 1
    assert reopened.lookup(torch.tensor([0, 1, 3])) is not None  # the good rows still serve


def test_other_teacher_or_data_never_reads_stale_outputs(tmp_path):
    TeacherOutputCache(tmp_path, KEY, 10).store(torch.arange(10), outputs(10))
    other = TeacherOutputCache(tmp_path, {**KEY, "teachers": "t2"}, 10)
    assert other.lookup(torch.arange(10)) is None and other.dir != TeacherOutputCache(tmp_path, KEY, 10).dir


def test_stale_meta_and_truncated_files_are_rebuilt(tmp_path):
    cache = TeacherOutputCache(tmp_path, KEY, 10)
    cache.store(torch.arange(10), outputs(10))
    cache.flush()
    meta = json.loads((cache.dir / "meta.json").read_text())
    meta["key"]["data"] = "something else"
    (cache.dir / "meta.json").write_text(json.dumps(meta))
    assert TeacherOutputCache(tmp_path, KEY, 10).lookup(torch.arange(10)) is None
    fresh = TeacherOutputCache(tmp_path, KEY, 10)
    fresh.store(torch.arange(10), outputs(10, seed=1))
    fresh.flush()
    path = fresh.dir / "logits.npy"
    path.write_bytes(path.read_bytes()[:200])  # truncated file
    damaged = TeacherOutputCache(tmp_path, KEY, 10)
    assert damaged.lookup(torch.arange(10)) is None
    damaged.store(torch.arange(10), outputs(10, seed=2))
    assert torch.equal(damaged.lookup(torch.arange(10))["logits"], outputs(10, seed=2)["logits"])


def test_teacher_fingerprint_follows_weights():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert teacher_fingerprint(["x"], [a]) != teacher_fingerprint(["x"], [b])
    b.load_state_dict(a.state_dict())
    assert teacher_fingerprint(["x"], [a]) == teacher_fingerprint(["x"], [b])


def test_a_row_zeroed_with_its_checksum_is_detected(tmp_path):
    """Format 1 summed words only, so an all-zero row had checksum 0: zeroing a row and its checksum passed."""
    cache = TeacherOutputCache(tmp_path, KEY, num_samples=6)
    cache.store(torch.arange(6), outputs(6))
    cache.flush()
    logits = np.load(cache.dir / "logits.npy", mmap_mode="r+")
    checksum = np.load(cache.dir / "checksum.npy", mmap_mode="r+")
    logits[4], checksum[4] = 0, 0
    logits.flush(), checksum.flush()
    reopened = TeacherOutputCache(tmp_path, KEY, num_samples=6)
    assert reopened.lookup(torch.tensor([4])) is None and reopened.stats["corrupt"] == 1
    assert reopened.lookup(torch.tensor([0, 5])) is not None
