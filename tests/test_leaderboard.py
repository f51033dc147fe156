"""Leaderboards are generated from records and paper rows, deterministically."""

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import QUICK
from zoo import leaderboard
from zoo.cli import main
from zoo.errors import RecordError
from zoo.paths import data_dir
from zoo.records import ModelInfo, Record, read_record


def test_committed_leaderboards_match_a_regeneration(tmp_path):
    """Byte for byte, the site included, marked against the code commit the committed boards state (a later code
    commit changes which rows are older, and a regeneration then says so; it does not make the committed boards
    wrong)."""
    stated = leaderboard.stated_code_commit((data_dir("leaderboards") / "kd_fashion_mnist.md").read_text())
    written = leaderboard.regenerate(tmp_path, code=stated)
    boards = data_dir("leaderboards")
    committed = sorted([p.name for p in boards.glob("*.*") if p.suffix in (".md", ".csv", ".png")
                        and p.name != "README.md"] + [f"site/{p.name}" for p in (boards / "site").iterdir()
                                                      if not p.name.startswith(".")])
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == committed
    for path in written:
        name = str(path.relative_to(tmp_path))
        assert path.read_bytes() == (boards / name).read_bytes(), name


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
    rows = [line for line in text.splitlines() if "| measured |" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| teacher", "| ce", "| kd"]  # named after the task's arms
    kd_row = rows[2]
    ce_acc = json.loads(summary.read_text())["arms"]["ce"]["mean"]
    kd_acc = json.loads(summary.read_text())["arms"]["kd"]["mean"]
    assert f"{kd_acc - ce_acc:+.4f}" in kd_row and "| 2 |" in kd_row
    assert "| 0.125 |" in rows[1] and "0.125" not in kd_row  # ONNX latency from the bench records
    first = text
    leaderboard.regenerate(board)
    assert (board / "kd_digits.md").read_text() == first  # deterministic


def test_bad_record_is_refused(tmp_path):
    bad = tmp_path / "record.json"
    bad.write_text("{not json")
    with pytest.raises(RecordError):
        leaderboard.add([bad])


def test_gain_is_measured_against_a_baseline_with_settings_and_ignored_settings_are_hidden():
    """disco_mini's baseline arm is ce (method splade_ce, whose label carries settings): its rows still get a gain,
    and keys splade_ce keeps only for disco's overrides (w_kd, ...) do not appear in its settings."""
    records = [read_record(p) for p in sorted((data_dir("leaderboards") / "records").glob("disco_mini__*.json"))]
    assert leaderboard.baseline_of("disco_mini") == "splade_ce"  # the arm named ce runs method splade_ce
    rows, metric = leaderboard.rows_of("disco_mini", records)
    assert metric == "test/mrr@10"  # the retrieval kind's headline
    by_name = {row.variant: row for row in rows}
    # the task's arms, in order (rows of an arm's runs at an older commit, ``ce@<commit>``, follow their arm)
    assert [name for name in by_name if "@" not in name] == ["teacher", "ce", "disco", "dense_zero_shot", "dense"]
    ce = [r.metrics[metric] for r in by_name["ce"].records]  # each row's gain: against the baseline of its commit
    disco = [r.metrics[metric] for r in by_name["disco"].records]
    assert {r.git_commit for r in by_name["ce"].records} == {r.git_commit for r in by_name["disco"].records}
    assert leaderboard.gain_cell(by_name["disco"]) == f"{sum(disco) / len(disco) - sum(ce) / len(ce):+.4f}"
    assert by_name["ce"].gain is None and "w_kd" not in by_name["ce"].settings
    assert "w_kd=0.99" in by_name["disco"].settings
    assert by_name["dense"].gain is None  # another student: nothing to compare with
    # the two dense arms differ in keys outside the method block (the arms' own overrides), listed in the settings
    assert "optim.lr=2e-05" in by_name["dense"].settings
    assert "trainer.max_epochs=0" in by_name["dense_zero_shot"].settings
    # the dense baseline only trained on candidates the SPLADE teacher mined; disco distils from that teacher
    assert by_name["dense"].teacher == "splade.minilm_small (mined the candidates only)"
    assert by_name["disco"].teacher == "splade.minilm_small"


def fake_record(run_id: str, method: dict, acc: float, seed: int = 0, commit: str | None = None) -> Record:
    """A kd_digits record with only what a board reads."""
    teachers = [ModelInfo("convnet.base", 94186, flops=2_000_000)] if method["name"] != "ce" else []
    return Record(task="kd_digits", run_id=run_id, method=method["name"], seed=seed,
                  student=ModelInfo("mlp.tiny", 2410, flops=4800), teachers=teachers,
                  metrics={"test/acc": acc, "test/loss": 1 - acc, "val/acc": acc},
                  teacher_metrics={"test/acc": 0.99} if teachers else {},
                  config={"method": method, "trainer": {"max_epochs": 40}, "data": {"name": "digits"}},
                  teacher_queries={"forward_passes": 12} if teachers else {}, wall_time_s={}, data={},
                  git_commit=commit)


def test_a_later_row_of_an_arm_is_labelled_by_the_commit_its_runs_were_made_at():
    """Records of kd at other settings made at one commit (as before a fix) are named after that commit; a group
    spanning two commits, or one clashing with a label already given, falls back to a count."""
    kd = {"name": "kd", "alpha": 0.9, "temperature": 4.0}
    old = {"name": "kd", "alpha": 0.5, "temperature": 2.0}
    older = {"name": "kd", "alpha": 0.3, "temperature": 2.0}
    records = [fake_record("r1", kd, 0.93, commit="c" * 40), fake_record("r2", old, 0.90, commit="5571dc7" + "0" * 33),
               fake_record("r3", old, 0.91, seed=1, commit="5571dc7" + "0" * 33),
               fake_record("r4", older, 0.89, commit="a" * 40), fake_record("r5", older, 0.88, seed=1, commit="b" * 40)]
    rows = [row.variant for row in leaderboard.variants("kd_digits", records)]
    assert rows == ["kd", "kd#2", "kd@5571dc7"]  # groups in order of their settings: alpha 0.3, then 0.5
    assert leaderboard.later_label("kd", 2, records[1:2], {"kd", "kd@5571dc7"}) == "kd#2"


def test_a_variant_rerun_at_a_later_commit_keeps_one_row_per_commit_and_no_seed_twice():
    """kd at the same settings, seeds 0-1 at an old commit and seeds 0-2 at a new one (a fix that left its settings
    alone, issue 22's detr arms): the newest runs are the plain row, the old ones a row labelled by their commit,
    each counting a seed once; a variant whose seeds do not repeat stays one row across commits."""
    kd = {"name": "kd", "alpha": 0.9, "temperature": 4.0}
    old, new = "5571dc7" + "0" * 33, "dfeae0a" + "0" * 33
    records = [fake_record(f"o{seed}", kd, 0.90, seed=seed, commit=old) for seed in (0, 1)]
    records += [fake_record(f"n{seed}", kd, 0.93, seed=seed, commit=new) for seed in (0, 1, 2)]
    for record in records:
        record.created = ("2026-11-29T" if record.git_commit == old else "2026-12-02T") + record.run_id
    rows = leaderboard.variants("kd_digits", records[::-1])
    assert [(row.variant, row.metrics["test/acc"]) for row in rows] == [("kd", [0.93] * 3), ("kd@5571dc7", [0.90] * 2)]
    spread = [fake_record("a", kd, 0.9, seed=0, commit=old), fake_record("b", kd, 0.91, seed=1, commit=new)]
    assert [row.variant for row in leaderboard.variants("kd_digits", spread)] == ["kd"]


def test_a_baseline_rerun_at_a_later_commit_still_gives_gains_and_the_newest_teacher_row():
    """ce (kd_digits' baseline) at an old and a new commit: kd's new runs gain over the new ce, an old kd row (other
    settings, old commit) over the old ce; the teacher row is the newest run's evaluation of it."""
    kd, old_kd = {"name": "kd", "alpha": 0.9, "temperature": 4.0}, {"name": "kd", "alpha": 0.5, "temperature": 2.0}
    old, new = "5571dc7" + "0" * 33, "dfeae0a" + "0" * 33
    records = [fake_record(f"oc{seed}", {"name": "ce"}, 0.80, seed=seed, commit=old) for seed in (0, 1)]
    records += [fake_record(f"ok{seed}", old_kd, 0.85, seed=seed, commit=old) for seed in (0, 1)]
    records += [fake_record(f"nc{seed}", {"name": "ce"}, 0.90, seed=seed, commit=new) for seed in (0, 1)]
    records += [fake_record(f"nk{seed}", kd, 0.93, seed=seed, commit=new) for seed in (0, 1)]
    for record in records:
        record.created = ("2026-11-29T" if record.git_commit == old else "2026-12-02T") + record.run_id
    for record in records[6:]:
        record.teacher_metrics = {"test/acc": 0.97}  # the old kd runs' teacher said 0.99: retrained since
    rows = {row.variant: row for row in leaderboard.rows_of("kd_digits", records)[0]}
    assert rows["kd"].gain == pytest.approx(0.03) and rows["kd@5571dc7"].gain == pytest.approx(0.05)
    assert rows["ce@5571dc7"].gain is None and rows["teacher"].metrics["test/acc"] == [0.97]


def test_a_board_names_rows_by_arm_puts_the_headline_first_and_lists_settings_once():
    """kd_digits' arms are ce and kd (alpha 0.9, T 4): runs of kd at other settings match no arm and are named
    after their method, made unique; numbers by hand."""
    kd = {"name": "kd", "alpha": 0.9, "temperature": 4.0}
    records = [fake_record("r1", {"name": "ce"}, 0.90), fake_record("r2", {"name": "ce"}, 0.92, seed=1),
               fake_record("r3", kd, 0.93), fake_record("r4", kd, 0.95, seed=1),
               fake_record("r5", {"name": "kd", "alpha": 0.5, "temperature": 2.0}, 0.96)]
    markdown, table = leaderboard.render("kd_digits", records, code=None)
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| variant"))
    assert header == ("| variant | source | test/acc | test/loss | gain over ce | seeds | teacher | student | student "
                      "params | student MFLOPs | onnx latency ms | teacher forward passes | from |")
    rows = [line for line in lines if line.startswith("| ") and line != header]
    assert rows == [
        "| teacher | measured | 0.9900 |  |  | 1 |  | convnet.base | 94,186 | 2 |  |  | runs at unknown |",
        "| ce | measured | 0.9100 ± 0.0141 | 0.0900 ± 0.0141 |  | 2 | — | mlp.tiny | 2,410 | 0.0048 |  |  | "
        "runs at unknown |",
        "| kd | measured | 0.9400 ± 0.0141 | 0.0600 ± 0.0141 | +0.0300 | 2 | convnet.base | mlp.tiny | 2,410 | 0.0048 "
        "|  | 12 | runs at unknown |",
        "| kd#2 | measured | 0.9600 | 0.0400 | +0.0500 | 1 | convnet.base | mlp.tiny | 2,410 | 0.0048 |  | 12 | "
        "runs at unknown |"]
    assert "- `kd#2`: kd (alpha=0.5, temperature=2.0); runs r5" in lines
    assert "- `kd`: kd (alpha=0.9, temperature=4.0); runs r3, r4" in lines
    assert "code commit unknown" in markdown
    parsed = list(csv.DictReader(io.StringIO(table)))
    assert [row["variant"] for row in parsed] == ["teacher", "ce", "kd", "kd#2"]
    assert list(parsed[0])[:6] == ["variant", "source", "test/acc", "test/acc std", "test/loss", "test/loss std"]
    ce = parsed[1]
    assert (ce["test/acc"], ce["test/acc std"], ce["student params"]) == ("0.9100", "0.0141", "2410")
    assert parsed[2]["from"] == "record:r3 record:r4" and parsed[2]["gain over ce"] == "+0.0300"
    assert parsed[3]["test/acc std"] == "" and parsed[3]["settings"] == "kd (alpha=0.5, temperature=2.0)"
    assert leaderboard.render("kd_digits", records, code=None) == (markdown, table)  # same records, same bytes


def test_paper_rows_sit_beside_measured_ones_and_say_where_they_come_from():
    markdown, table = leaderboard.render("mealv2_imagenet", [], code=None)
    rows = [line for line in markdown.splitlines() if "| paper |" in line]
    assert len(rows) == 8 and rows[0].startswith("| meal_v2 | paper | 0.7319 |")
    assert rows[0].endswith("| Shen & Savvides 2020, MEAL V2 README table |")
    assert "| meal_v2 | paper | 0.6760 |" in markdown  # four decimals like the measured rows
    assert "paper:Shen & Savvides 2020, MEAL V2 README table" in table


def git_or_skip(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(data_dir("tasks").parent), *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout with history")
    return done.stdout.strip()


def test_rows_from_runs_before_the_code_commit_are_marked():
    head, parent = git_or_skip("rev-parse", "HEAD"), git_or_skip("rev-parse", "HEAD~1")
    assert leaderboard.is_older(parent, head) and not leaderboard.is_older(head, head)
    assert leaderboard.is_older(None, head) and not leaderboard.is_older(parent, None)
    records = [fake_record("r1", {"name": "ce"}, 0.90, commit=head),
               fake_record("r2", {"name": "kd", "alpha": 0.9, "temperature": 4.0}, 0.93, commit=parent)]
    markdown, table = leaderboard.render("kd_digits", records, code=head[:12])
    assert leaderboard.stated_code_commit(markdown) == head[:12]
    rows = {line.split(" | ")[0]: line for line in markdown.splitlines() if "| measured |" in line}
    assert rows["| ce"].endswith(f"runs at {head[:7]} |")
    assert rows["| kd"].endswith(f"runs at {parent[:7]} {leaderboard.OLDER} |")
    assert [row["older than code"] for row in csv.DictReader(io.StringIO(table))] == ["yes", "no", "yes"]


def add_good_and_damaged(tmp_path, monkeypatch, damage) -> Path:
    """``leaderboard.add`` of a good committed kd_digits record followed by a copy that ``damage`` changed, into an
    empty board under tmp_path (returned, so a test can check that nothing was copied)."""
    board = tmp_path / "leaderboards"
    real = data_dir
    monkeypatch.setattr(leaderboard, "data_dir", lambda name: board if name == "leaderboards" else real(name))
    committed = sorted((real("leaderboards") / "records").glob("kd_digits__*.json"))
    good, damaged = tmp_path / "good.json", tmp_path / "damaged.json"
    good.write_text(committed[0].read_text())
    raw = json.loads(committed[1].read_text())
    damage(raw)
    damaged.write_text(json.dumps(raw))
    leaderboard.add([good, damaged])
    return board


def test_a_smoke_run_is_refused_and_nothing_is_copied(tmp_path, monkeypatch):
    with pytest.raises(RecordError, match="a smoke run"):
        add_good_and_damaged(tmp_path, monkeypatch, lambda raw: raw["config"]["trainer"].update(fast_dev_run=True))
    assert not (tmp_path / "leaderboards" / "records").exists()  # the good record before it was not copied either


def test_a_record_with_a_non_finite_metric_is_refused_and_nothing_is_copied(tmp_path, monkeypatch):
    """A diverged run (NaN loss, chance accuracy) is no result, and once copied it broke every later render."""
    with pytest.raises(RecordError, match=r"non-finite metric\(s\) test/loss"):
        add_good_and_damaged(tmp_path, monkeypatch, lambda raw: raw["metrics"].update({"test/loss": float("nan")}))
    assert not (tmp_path / "leaderboards" / "records").exists()


def test_a_non_finite_record_already_among_the_records_stops_a_regeneration_in_one_line(tmp_path, monkeypatch, capsys):
    """One copied before zoo leaderboard add refused them crashed every later render with a traceback."""
    board = tmp_path / "leaderboards"
    real = data_dir
    monkeypatch.setattr(leaderboard, "data_dir", lambda name: board if name == "leaderboards" else real(name))
    (board / "records").mkdir(parents=True)
    committed = sorted((real("leaderboards") / "records").glob("kd_digits__*.json"))
    (board / "records" / committed[0].name).write_text(committed[0].read_text())
    raw = json.loads(committed[1].read_text())
    raw["metrics"]["test/acc"] = float("nan")
    broken = board / "records" / committed[1].name
    broken.write_text(json.dumps(raw))
    assert main(["leaderboard"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {broken}: non-finite metric(s) test/acc") and "Traceback" not in err
    assert sorted(p.name for p in board.iterdir()) == ["records"]  # no board written


def test_counts_are_whole_numbers_with_thousands_separators_and_scores_keep_four_decimals():
    import statistics
    import types

    from zoo.board_cells import metric_cell

    def row(values):
        return types.SimpleNamespace(source="measured", metrics={"m": values},
                                     std=lambda metric: statistics.stdev(values) if len(values) > 1 else None)

    assert metric_cell(row([634447.0, 634447.0]), "m") == "634,447 ± 0"
    assert metric_cell(row([4000.0, 5000.0]), "m") == "4,500 ± 707"
    assert metric_cell(row([0.5, 0.7]), "m") == "0.6000 ± 0.1414"
    assert metric_cell(row([999.5]), "m") == "999.5000"
