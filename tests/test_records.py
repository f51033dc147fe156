import json

import pytest

from zoo.errors import RecordError
from zoo.records import ModelInfo, Record, new_run_id, read_record, write_record


def make_record(**changes) -> Record:
    fields = dict(task="kd_digits", run_id=new_run_id(), method="kd", seed=0,
                  student=ModelInfo("mlp.tiny", 2410), teachers=[ModelInfo("convnet.base", 93000)],
                  metrics={"test/acc": 0.95}, teacher_metrics={"test/acc": 0.99}, config={"task": "kd_digits"},
                  teacher_queries={"forward_passes": 17, "samples": 1078}, wall_time_s={"fit": 1.0},
                  data={"name": "digits"})
    fields.update(changes)
    return Record(**fields)


def test_round_trip(tmp_path):
    record = make_record()
    write_record(record, tmp_path / "record.json")
    assert read_record(tmp_path / "record.json") == record
    assert not [p for p in tmp_path.iterdir() if p.name != "record.json"]  # no temp file left


def test_invalid_record_is_not_written(tmp_path):
    with pytest.raises(RecordError, match="metric 'test/acc' is not a number"):
        write_record(make_record(metrics={"test/acc": "high"}), tmp_path / "record.json")
    assert not (tmp_path / "record.json").exists()


def test_corrupt_and_incomplete_records(tmp_path):
    path = tmp_path / "record.json"
    write_record(make_record(), path)
    path.write_text(path.read_text()[:50])
    with pytest.raises(RecordError, match="corrupt run record"):
        read_record(path)
    raw = json.loads(make_record().to_json())
    del raw["seed"]
    path.write_text(json.dumps(raw))
    with pytest.raises(RecordError, match="not a valid run record"):
        read_record(path)


def test_run_ids_sort_by_time():
    import time

    first = new_run_id()
    time.sleep(0.001)
    assert new_run_id() > first


def test_a_record_names_the_last_commit_that_changed_the_code_not_head(tmp_path):
    """A docs-only commit after the code's (a README, regenerated boards) is not the commit a run's numbers come
    from; outside a git checkout there is none."""
    import subprocess

    from zoo.records import git_commit

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "a.py").write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "code")
    code = git("rev-parse", "HEAD")
    (tmp_path / "README.md").write_text("docs\n")
    git("add", "-A")
    git("commit", "-qm", "docs")
    assert git("rev-parse", "HEAD") != code and git_commit(tmp_path) == code
    assert git_commit(tmp_path / "zoo" / "missing") is None
