import json
import statistics

import pytest
from omegaconf import OmegaConf

from tests.helpers import QUICK, has_fashion_mnist
from zoo import leaderboard
from zoo.cli import main
from zoo.config import compose
from zoo.paths import data_dir
from zoo.reproduce import (
    ArmResult,
    Reference,
    arm_overrides,
    arm_spec,
    board_references,
    differences,
    grade,
    tolerance_of,
)


def test_reproduce_runs_every_arm_per_seed_and_judges(runs, capsys, tmp_path):
    code = main(["reproduce", "task=kd_digits", "seeds=2", *QUICK, *runs, "method.alpha=0.8",
                 "reproduce.expected.ce=[0.3,1.0]", "reproduce.expected.kd=[0.3,1.0]"])
    out = capsys.readouterr().out
    assert code == 0 and "teacher" in out and "gain over ce" in out
    summary_path = next((tmp_path / "runs" / "kd_digits").glob("reproduce-*.json"))
    summary = json.loads(summary_path.read_text())
    assert set(summary["arms"]) == {"ce", "kd"} and len(summary["records"]) == 4
    assert all(len(arm["values"]) == 2 for arm in summary["arms"].values())
    records = [json.loads(open(path).read()) for path in summary["records"]]
    assert sorted((r["method"], r["seed"]) for r in records) == [("ce", 0), ("ce", 1), ("kd", 0), ("kd", 1)]
    assert all(r["config"]["method"].get("alpha", 0.8) == 0.8 for r in records)  # method.* only where it fits


def test_reproduce_fails_outside_the_expected_range(runs, capsys):
    code = main(["reproduce", "task=kd_digits", "seeds=1", *QUICK, *runs, "trainer.max_epochs=1",
                 "reproduce.expected.ce=[0.999,1.0]"])
    assert code == 1 and "FAIL" in capsys.readouterr().out


def test_reproduce_rejects_bad_seeds(capsys):
    assert main(["reproduce", "task=kd_digits", "seeds=many"]) == 2
    assert main(["reproduce", "task=kd_digits", "seeds=0"]) == 2
    from zoo.errors import ConfigError
    from zoo.reproduce import reproduce

    with pytest.raises(ConfigError, match="seeds=0: a reproduction needs at least one seed"):
        reproduce("kd_digits", 0, [])  # through the API too, where 0 used to mean "the task's default"


def test_reproduce_runs_only_the_named_arms(runs, capsys, tmp_path):
    assert main(["reproduce", "task=kd_digits", "seeds=1", "arms=kd", *QUICK, *runs, "trainer.max_epochs=1",
                 "reproduce.expected.kd=[0.0,1.0]"]) == 0
    summary = json.loads(next((tmp_path / "runs" / "kd_digits").glob("reproduce-*.json")).read_text())
    assert set(summary["arms"]) == {"kd"} and len(summary["records"]) == 1
    capsys.readouterr()
    assert main(["reproduce", "task=kd_digits", "seeds=1", "arms=kd,meal", *runs]) == 2
    err = capsys.readouterr().err
    assert "no arm meal" in err and "ce, kd" in err and "Traceback" not in err


def task_arms(task: str) -> dict[str, tuple[str, list[str]]]:
    """The task's reproduce arms: name -> (method, own overrides), as the task names them today."""
    return {name: (method, own) for name, method, own, _ in
            map(arm_spec, OmegaConf.to_container(compose(task).reproduce.arms))}


@pytest.mark.slow
@pytest.mark.skipif(not has_fashion_mnist(), reason="needs apt-get install dataset-fashion-mnist")
def test_kd_beats_ce_on_fashion_mnist_by_more_than_the_spread(runs, tmp_path):
    assert main(["reproduce", "task=kd_fashion_mnist", "seeds=3", "trainer.enable_progress_bar=false", *runs]) == 0
    summary = json.loads(next((tmp_path / "runs" / "kd_fashion_mnist").glob("reproduce-*.json")).read_text())
    # The arm names come from the task (its kd arm is kd_t2, the setting chosen on validation), not from here.
    (distilled,) = [arm for arm in task_arms("kd_fashion_mnist") if arm != summary["baseline"]]
    ce, kd = summary["arms"][summary["baseline"]], summary["arms"][distilled]
    assert kd["mean"] - ce["mean"] > max(kd["std"], ce["std"])


@pytest.mark.slow
@pytest.mark.skipif(not has_fashion_mnist(), reason="needs apt-get install dataset-fashion-mnist")
def test_meal_v2_beats_ce_on_fashion_mnist_by_more_than_the_spread(runs, tmp_path):
    """The ensemble student beats the CE student (3 seeds), and the kd arm distils from one teacher.

    Issue 4 also asks meal_v2 to beat the single-teacher kd arm; it does not yet
    (2026-11-29: kd 0.9050 ± 0.0009, meal_v2 0.9034 ± 0.0010), so that is not asserted.
    """
    arms = task_arms("mealv2_fashion_mnist")
    meal = next(name for name, (method, own) in arms.items() if method == "meal_v2" and not own)  # the ensemble
    kd = next(name for name, (method, _) in arms.items() if method.startswith("kd"))
    baseline = str(compose("mealv2_fashion_mnist").reproduce.baseline)
    assert main(["reproduce", "task=mealv2_fashion_mnist", "seeds=3", f"arms={baseline},{kd},{meal}",
                 "trainer.enable_progress_bar=false", *runs]) == 0
    summary = json.loads(next((tmp_path / "runs" / "mealv2_fashion_mnist").glob("reproduce-*.json")).read_text())
    ce, meal_v2 = summary["arms"][baseline], summary["arms"][meal]
    assert meal_v2["mean"] - ce["mean"] > max(meal_v2["std"], ce["std"])
    records = [json.loads(open(path).read()) for path in summary["records"]]
    kd_teachers = {tuple(t["name"] for t in r["teachers"]) for r in records if r["config"]["method"]["name"] == "kd"}
    assert kd_teachers == {("convnet.deep",)}  # the kd arm distils from one teacher of the ensemble


def test_arm_specs_name_method_and_own_overrides():
    from zoo.errors import ConfigError

    assert arm_spec("kd") == ("kd", "kd", [], None)
    assert arm_spec({"name": "kd1", "method": "kd_t2", "overrides": ["teacher.arch=[convnet.base]"]}) == \
        ("kd1", "kd_t2", ["teacher.arch=[convnet.base]"], None)
    assert arm_spec({"name": "zero", "method": "ce", "seeds": 1})[3] == 1
    with pytest.raises(ConfigError, match="not a method name"):
        arm_spec({"method": "kd", "seed": 3})


def test_an_arm_keeps_its_own_settings_and_seed_cap(runs, capsys, tmp_path):
    arms = 'reproduce.arms=[kd, {name: short, method: ce, seeds: 1, overrides: ["trainer.max_epochs=1"]}]'
    assert main(["reproduce", "task=kd_digits", "seeds=2", *QUICK, *runs, "trainer.max_epochs=2", arms,
                 "reproduce.expected={}"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("note: arm short sets trainer.max_epochs itself; trainer.max_epochs=2 does not apply to it") == 1
    summary = json.loads(next((tmp_path / "runs" / "kd_digits").glob("reproduce-*.json")).read_text())
    assert len(summary["arms"]["kd"]["values"]) == 2 and len(summary["arms"]["short"]["values"]) == 1
    records = [json.loads(open(path).read()) for path in summary["records"]]
    epochs = {(r["method"], r["seed"]): r["config"]["trainer"]["max_epochs"] for r in records}
    assert epochs == {("kd", 0): 2, ("kd", 1): 2, ("ce", 0): 1}


def test_verdicts_grade_against_the_board_row_and_the_tasks_tolerance():
    """The issue's case: board kd 0.9068 ± 0.0016; another machine's 0.9048 is 0.0020 off, beyond the spread."""
    board = Reference(mean=0.9068, std=0.0016, seeds=3, commits=["a09f64d"])
    assert grade(0.9060, board, 0.003) == "OK"     # 0.0008 off: within the spread
    assert grade(0.9052, board, 0.003) == "OK"     # 0.0016 off: on the spread's edge
    assert grade(0.9048, board, 0.003) == "OKish"  # 0.0020 off: within the tolerance
    assert grade(0.9098, board, 0.003) == "OKish"  # 0.0030 off, above: on the tolerance's edge
    assert grade(0.9030, board, 0.003) == "FAIL"   # 0.0038 off
    assert grade(0.9048, board, None) == "FAIL"    # no tolerance stated: no OKish
    assert grade(0.4382, Reference(0.4382, 0.0, 1, []), None) == "OK"  # an untrained arm: the same number
    arm = ArmResult("kd_t2", [0.9022, 0.9030, 0.9038], [0.88, 0.94], 0.9030, 0.0008, board, 0.003)
    assert (arm.verdict, arm.judged_by, arm.ok) == ("FAIL", "board", False)  # the range would have said OK
    fallback = ArmResult("kd_t2", [0.9048], [0.88, 0.94], 0.9048, 0.0, None, 0.002)
    assert (fallback.verdict, fallback.judged_by) == ("OK", "expected")
    assert ArmResult("kd_t2", [0.95], [0.88, 0.94], 0.95, 0.0).verdict == "FAIL"
    assert (ArmResult("x", [0.5], None, 0.5, 0.0).verdict, ArmResult("x", [0.5], None, 0.5, 0.0).ok) == ("—", True)


def test_a_bad_tolerance_is_a_one_line_error():
    from zoo.errors import ConfigError

    assert tolerance_of({"tolerance": 0.003}) == 0.003 and tolerance_of({}) is None
    for bad in (-0.1, "wide", True):
        with pytest.raises(ConfigError, match="reproduce.tolerance must be a number"):
            tolerance_of({"tolerance": bad})
    assert main(["reproduce", "task=kd_digits", "reproduce.tolerance=-1"]) == 2


def test_config_differences_skip_seeds_run_folders_and_keys_only_one_side_has():
    mine = {"seed": 1, "run": {"root": "/a"}, "trainer": {"max_epochs": 3, "enable_progress_bar": False},
            "method": {"name": "kd", "alpha": 0.5, "new_key": 1}, "teacher": {"arch": ["convnet.deep"]}}
    theirs = {"seed": 0, "run": {"root": "/b"}, "trainer": {"max_epochs": 15, "enable_progress_bar": True},
              "method": {"name": "kd", "alpha": 0.5}, "teacher": {"arch": ["convnet.base", "convnet.deep"]}}
    assert differences(mine, theirs, ("seed", "run", "trainer.enable_progress_bar")) == [
        ("teacher.arch", ["convnet.deep"], ["convnet.base", "convnet.deep"]), ("trainer.max_epochs", 3, 15)]


def arm_configs(task: str, overrides: list[str]) -> dict[str, dict]:
    return {name: OmegaConf.to_container(compose(task, arm_overrides(method, overrides) + own + ["seed=0"]),
                                         resolve=True) for name, (method, own) in task_arms(task).items()}


def test_the_reference_is_the_boards_row_of_the_arm_only_for_the_boards_config():
    """kd_fashion_mnist as configured today against its committed board: the board's mean and spread, by hand from
    the records; with other epochs the board is no reference, and a note says why."""
    records = [r for r in leaderboard.load_records()["kd_fashion_mnist"] if r.method == "kd"]
    values = [r.metrics["test/acc"] for r in records]
    notes = []
    found = board_references("kd_fashion_mnist", arm_configs("kd_fashion_mnist", ["run.root=/elsewhere"]),
                             "test/acc", notes.append)
    assert set(found) == {"ce", "kd_t2"} and not notes
    assert found["kd_t2"].mean == pytest.approx(statistics.fmean(values))
    assert found["kd_t2"].std == pytest.approx(statistics.stdev(values)) and found["kd_t2"].seeds == 3
    assert found["kd_t2"].commits == sorted({r.git_commit[:7] for r in records})
    found = board_references("kd_fashion_mnist", arm_configs("kd_fashion_mnist", ["trainer.max_epochs=3"]),
                             "test/acc", notes.append)
    assert found == {} and len(notes) == 2
    assert "trainer.max_epochs=15 (here 3)" in notes[1] and "arm kd_t2" in notes[1]


def test_reproduce_grades_against_a_board_it_can_fail(runs, capsys, tmp_path, monkeypatch):
    """One quick arm, added to a board of its own, then reproduced: within the tolerance it passes; with the
    board's number moved beyond the tolerance (the records edited by hand) the same run fails."""
    board = tmp_path / "leaderboards"
    (board / "records").mkdir(parents=True)
    real = data_dir
    monkeypatch.setattr(leaderboard, "data_dir", lambda name: board if name == "leaderboards" else real(name))
    quick = ["task=kd_digits", "seeds=1", "arms=ce", *QUICK, *runs, "reproduce.expected={}"]
    assert main(["reproduce", *quick]) == 0
    first = next((tmp_path / "runs" / "kd_digits").glob("reproduce-*.json"))
    assert json.loads(first.read_text())["arms"]["ce"]["judged_by"] is None  # no board row yet, no range
    assert main(["leaderboard", f"add={first}"]) == 0
    capsys.readouterr()
    assert main(["reproduce", *quick, "reproduce.tolerance=0.05"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "board" in out and ("OK" in out or "OKish" in out)
    second = max((tmp_path / "runs" / "kd_digits").glob("reproduce-*.json"))
    arm = json.loads(second.read_text())["arms"]["ce"]
    assert arm["judged_by"] == "board" and arm["verdict"] in ("OK", "OKish")
    assert arm["reference"]["seeds"] == 1 and abs(arm["reference"]["mean"] - arm["mean"]) <= 0.05
    (record_path,) = (board / "records").glob("kd_digits__*.json")
    raw = json.loads(record_path.read_text())
    raw["metrics"]["test/acc"] = arm["mean"] - 0.2
    record_path.write_text(json.dumps(raw))
    assert main(["reproduce", *quick, "reproduce.tolerance=0.05"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_an_arm_on_a_derived_method_config_takes_the_base_methods_overrides():
    """``lelp_tweets`` builds on ``lelp`` (its defaults list): a user's ``method.directions`` applies to it, a key
    no method has does not."""
    assert arm_overrides("lelp_tweets", ["method.directions=kmeans", "method.margin=1"]) == \
        ["method.directions=kmeans", "method=lelp_tweets"]


def test_an_interrupted_reproduce_resumes_where_it_stopped(runs, capsys, tmp_path, monkeypatch):
    """Seed 0 finishes, seed 1 is stopped by Ctrl-C mid-fit (exit 130, the hint: the same command again): the same
    command reads seed 0's record, resumes seed 1 in its folder, and makes no new run folder; then every run is
    read."""
    import signal

    import lightning as L

    import zoo.train
    from zoo.records import read_record

    class CtrlC(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 2:
                raise KeyboardInterrupt

    real = zoo.train.train
    monkeypatch.setattr(zoo.train, "train", lambda cfg, say=print: real(cfg, say, [CtrlC()] if cfg.seed == 1 else None))
    command = ["reproduce", "task=kd_digits", "seeds=2", "arms=ce", *QUICK, *runs, "trainer.max_epochs=2",
               "reproduce.expected={}"]
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert main(command) == 130
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after a Ctrl-C
    assert "hint: run the same zoo reproduce command again" in capsys.readouterr().err
    folders = sorted((tmp_path / "runs" / "kd_digits").iterdir())
    assert [(f / "record.json").is_file() for f in folders] == [True, False]
    first = read_record(folders[0] / "record.json")

    monkeypatch.setattr(zoo.train, "train", real)
    capsys.readouterr()
    assert main(command) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"finished earlier in {folders[0]}: read, not run again" in out
    assert f"unfinished in {folders[1]}: resuming it" in out
    assert sorted(p for p in (tmp_path / "runs" / "kd_digits").iterdir() if p.is_dir()) == folders
    assert read_record(folders[0] / "record.json") == first and (folders[1] / "record.json").is_file()
    assert len(list((folders[1] / "logs").iterdir())) == 2  # the crashed attempt's log, then the resumed one

    assert main(command[:-1] + ["reproduce.expected.ce=[0.0,1.0]"]) == 0  # the reproduction's own settings may change
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("read, not run again") == 2 and "resuming" not in out
    assert main(command + ["optim.lr=0.02"]) == 0  # another config: new runs
    assert len([p for p in (tmp_path / "runs" / "kd_digits").iterdir() if p.is_dir()]) == 4
