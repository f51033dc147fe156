"""Leaderboards are generated from records and paper rows, deterministically."""

import json
from pathlib import Path

import pytest

from tests.helpers import QUICK
from zoo import leaderboard
from zoo.cli import main
from zoo.errors import RecordError
from zoo.paths import data_dir
from zoo.records import read_record


def test_committed_leaderboards_match_a_regeneration(tmp_path):
    written = leaderboard.regenerate(tmp_path)
    committed = sorted(p.name for p in data_dir("leaderboards").glob("*.*") if p.suffix in (".md", ".csv")
                       and p.name != "README.md")
    assert sorted(p.name for p in written) == committed
    for path in written:
        assert path.read_text() == (data_dir("leaderboards") / path.name).read_text(), path.name


def test_add_reproduce_summary_then_regenerate(tmp_path, monkeypatch, runs, capsys):
    board = tmp_path / "leaderboards"
    (board / "records").mkdir(parents=True)
    real = data_dir
    monkeypatch.setattr(leaderboard, "data_dir", lambda name: board if name == "leaderboards" else real(name))
    assert main(["reproduce", "task=kd_digits", "seeds=2", *QUICK, *runs,
                 "reproduce.expected.ce=[0,1]", "reproduce.expected.kd=[0,1]"]) == 0
    summary = next((tmp_path / "runs" / "kd_digits").glob("reproduce-*.json"))
    ce_runs = [p for p in json.loads(summary.read_text())["records"] if '"method": "ce"' in open(p).read()]
    bench = {"rows": [{"batch": 1, "ort": {"p50_ms": 0.125}}, {"batch": 8, "ort": {"p50_ms": 0.5}}]}
    for record_path in ce_runs:  # as `zoo bench run=...` leaves it beside the record
        (Path(record_path).parent / "bench-20261128-000000-000000.json").write_text(json.dumps(bench))
    assert main(["leaderboard", f"add={summary}"]) == 0
    assert len(list((board / "records").glob("kd_digits__*.bench.json"))) == 2
    assert len([p for p in (board / "records").glob("kd_digits__*.json") if ".bench" not in p.name]) == 4
    text = (board / "kd_digits.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| measured")]
    assert len(rows) == 3  # teacher, ce, kd
    kd_row = next(r for r in rows if "| kd (" in r)
    ce_acc = json.loads(summary.read_text())["arms"]["ce"]["mean"]
    kd_acc = json.loads(summary.read_text())["arms"]["kd"]["mean"]
    assert f"{kd_acc - ce_acc:+.4f}" in kd_row and "| 2 |" in kd_row
    ce_row = next(r for r in rows if "| ce |" in r)
    assert "| 0.125 |" in ce_row and "0.125" not in kd_row  # ONNX latency from the bench records
    first = text
    leaderboard.regenerate(board)
    assert (board / "kd_digits.md").read_text() == first  # deterministic


def test_bad_record_is_refused(tmp_path):
    bad = tmp_path / "record.json"
    bad.write_text("{not json")
    with pytest.raises(RecordError):
        leaderboard.add([bad])


def test_gain_is_measured_against_a_baseline_with_settings_and_ignored_settings_are_hidden():
    """disco_mini's baseline arm is splade_ce, whose label carries settings: its rows still get a gain, and keys
    splade_ce keeps only for disco's overrides (w_kd, ...) do not appear on its row."""
    records = [read_record(p) for p in sorted((data_dir("leaderboards") / "records").glob("disco_mini__*.json"))]
    assert leaderboard.baseline_of("disco_mini") == "splade_ce"  # the arm named ce runs method splade_ce
    metric = leaderboard.headline_metric("disco_mini", records)
    assert metric == "test/mrr@10"  # the retrieval kind's headline
    rows = leaderboard.measured_rows(records, leaderboard.baseline_of("disco_mini"), metric)
    by_method = {row["method"].split(" ")[0]: row for row in rows if "untrained" not in row["method"]}
    ce = [r.metrics[metric] for r in records if r.method == "splade_ce"]
    disco = [r.metrics[metric] for r in records if r.method == "disco"]
    assert by_method["disco"]["gain"] == f"{sum(disco) / len(disco) - sum(ce) / len(ce):+.4f}"
    assert by_method["splade_ce"]["gain"] == "" and "w_kd" not in by_method["splade_ce"]["method"]
    assert "w_kd=0.99" in by_method["disco"]["method"]
    assert by_method["dense_ce"]["gain"] == ""  # another student: nothing to compare with
    # the dense baseline only trained on candidates the SPLADE teacher mined; disco distils from that teacher
    assert by_method["dense_ce"]["teacher"] == "splade.minilm_small (mined the candidates only)"
    assert by_method["disco"]["teacher"] == "splade.minilm_small"


def test_a_smoke_run_is_refused_and_nothing_is_copied(tmp_path, monkeypatch):
    board = tmp_path / "leaderboards"
    real = data_dir
    monkeypatch.setattr(leaderboard, "data_dir", lambda name: board if name == "leaderboards" else real(name))
    committed = sorted((real("leaderboards") / "records").glob("kd_digits__*.json"))
    good, smoke = tmp_path / "good.json", tmp_path / "smoke.json"
    good.write_text(committed[0].read_text())
    raw = json.loads(committed[1].read_text())
    raw["config"]["trainer"]["fast_dev_run"] = True
    smoke.write_text(json.dumps(raw))
    with pytest.raises(RecordError, match="a smoke run"):
        leaderboard.add([good, smoke])
    assert not (board / "records").exists()  # the good record before it was not copied either
