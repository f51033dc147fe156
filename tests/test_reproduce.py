import json

import pytest

from tests.helpers import QUICK, has_fashion_mnist
from zoo.cli import main


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


def test_reproduce_runs_only_the_named_arms(runs, capsys, tmp_path):
    assert main(["reproduce", "task=kd_digits", "seeds=1", "arms=kd", *QUICK, *runs, "trainer.max_epochs=1",
                 "reproduce.expected.kd=[0.0,1.0]"]) == 0
    summary = json.loads(next((tmp_path / "runs" / "kd_digits").glob("reproduce-*.json")).read_text())
    assert set(summary["arms"]) == {"kd"} and len(summary["records"]) == 1
    capsys.readouterr()
    assert main(["reproduce", "task=kd_digits", "seeds=1", "arms=kd,meal", *runs]) == 2
    err = capsys.readouterr().err
    assert "no arm meal" in err and "ce, kd" in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.skipif(not has_fashion_mnist(), reason="needs apt-get install dataset-fashion-mnist")
def test_kd_beats_ce_on_fashion_mnist_by_more_than_the_spread(runs, tmp_path):
    assert main(["reproduce", "task=kd_fashion_mnist", "seeds=3", "trainer.enable_progress_bar=false", *runs]) == 0
    summary = json.loads(next((tmp_path / "runs" / "kd_fashion_mnist").glob("reproduce-*.json")).read_text())
    # The arm names come from the task (its kd arm is kd_t2, the setting chosen on validation), not from here.
    (distilled,) = [arm for arm in summary["arms"] if arm != summary["baseline"]]
    ce, kd = summary["arms"][summary["baseline"]], summary["arms"][distilled]
    assert kd["mean"] - ce["mean"] > max(kd["std"], ce["std"])


@pytest.mark.slow
@pytest.mark.skipif(not has_fashion_mnist(), reason="needs apt-get install dataset-fashion-mnist")
def test_meal_v2_beats_ce_on_fashion_mnist_by_more_than_the_spread(runs, tmp_path):
    """The ensemble student beats the CE student (3 seeds), and the kd arm distils from one teacher.

    Issue 4 also asks meal_v2 to beat the single-teacher kd arm; it does not yet
    (2026-11-29: kd 0.9050 ± 0.0009, meal_v2 0.9034 ± 0.0010), so that is not asserted.
    """
    assert main(["reproduce", "task=mealv2_fashion_mnist", "seeds=3", "arms=ce,kd,meal_v2",
                 "trainer.enable_progress_bar=false", *runs]) == 0
    summary = json.loads(next((tmp_path / "runs" / "mealv2_fashion_mnist").glob("reproduce-*.json")).read_text())
    ce, meal_v2 = summary["arms"]["ce"], summary["arms"]["meal_v2"]
    assert meal_v2["mean"] - ce["mean"] > max(meal_v2["std"], ce["std"])
    records = [json.loads(open(path).read()) for path in summary["records"]]
    kd_teachers = {tuple(t["name"] for t in r["teachers"]) for r in records if r["config"]["method"]["name"] == "kd"}
    assert kd_teachers == {("convnet.deep",)}  # the kd arm distils from one teacher of the ensemble


def test_arm_specs_name_method_and_own_overrides():
    from zoo.errors import ConfigError
    from zoo.reproduce import arm_spec

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
