import pytest
from omegaconf import OmegaConf

from zoo.cli import main
from zoo.config import compose, group_options, task_names
from zoo.errors import ConfigError, UnknownNameError
from zoo.paths import data_dir
from zoo.registry import DATASETS, METHODS


def method_of_option(option: str) -> str:
    """The method a ``tasks/method/<option>.yaml`` configures: its ``name``, else its first default's."""
    raw = OmegaConf.load(data_dir("tasks") / "method" / f"{option}.yaml")
    return str(raw.name) if "name" in raw else method_of_option(str(raw.defaults[0]))


@pytest.mark.parametrize("task", task_names())
def test_every_shipped_task_composes_with_every_method_of_its_kind(task):
    """Methods of other kinds are refused by ``zoo train`` before any data is read (tests/test_methods.py)."""
    kind = DATASETS.get(compose(task).data.name).kind
    methods = [m for m in group_options("method") if kind in METHODS.get(method_of_option(m)).kinds]
    assert methods
    for method in methods:
        cfg = compose(task, [f"method={method}"])
        assert cfg.task == task and cfg.method.name in METHODS.declared()
        assert OmegaConf.is_struct(cfg)


def test_every_group_option_composes():
    for group in ("data", "trainer"):
        for option in group_options(group):
            assert compose("kd_digits", [f"{group}={option}"])[group] is not None


def test_override_is_applied_and_typed():
    cfg = compose("kd_digits", ["trainer.max_epochs=2", "method.alpha=0.5", "optim.lr=1e-3"])
    assert cfg.trainer.max_epochs == 2 and cfg.method.alpha == 0.5 and cfg.optim.lr == pytest.approx(1e-3)


def test_unknown_key_names_the_nearest_key():
    with pytest.raises(ConfigError, match="unknown config key 'trainer.max_epoch'") as err:
        compose("kd_digits", ["trainer.max_epoch=3"])
    assert "trainer.max_epochs" in err.value.hint


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="'trainer.max_epochs' expects int"):
        compose("kd_digits", ["trainer.max_epochs=three"])


def test_int_for_float_is_accepted():
    assert compose("kd_digits", ["method.alpha=1"]).method.alpha == 1


def test_unknown_task_and_group_option_suggest():
    with pytest.raises(UnknownNameError) as err:
        compose("kd_digit")
    assert "kd_digits" in err.value.hint
    with pytest.raises(ConfigError, match="unknown method 'kdd'") as err:
        compose("kd_digits", ["method=kdd"])
    assert "did you mean 'kd'" in err.value.hint


def test_malformed_override():
    with pytest.raises(ConfigError, match="expected key=value"):
        compose("kd_digits", ["trainer.max_epochs"])


def test_cli_prints_one_line_and_exits_2(capsys):
    assert main(["show", "task=kd_digits", "trainer.max_epoch=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "error: unknown config key 'trainer.max_epoch'"
    assert err[1].startswith("hint: did you mean 'trainer.max_epochs'?")
    assert len(err) == 2


def test_cli_debug_shows_the_traceback():
    with pytest.raises(ConfigError):
        main(["--debug", "show", "task=kd_digits", "nope=1"])


def test_cli_show_prints_resolved_yaml(capsys):
    assert main(["show", "task=kd_digits", "method=ce"]) == 0
    shown = OmegaConf.create(capsys.readouterr().out)
    assert shown.method.name == "ce" and shown.task == "kd_digits"


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", r"data.batch_size=0: must be an integer of at least 1"),
    ("optim.lr=-1", r"optim.lr=-1: must be a number above 0"),
    ("trainer.max_epochs=-2", r"trainer.max_epochs=-2: must be an integer of at least 0"),
])
def test_values_out_of_range_are_refused_before_a_run_folder_exists(override, message, tmp_path, capsys):
    with pytest.raises(ConfigError, match=message):
        compose("kd_digits", [override])
    assert main(["train", "task=kd_digits", override, f"run.root={tmp_path / 'runs'}"]) == 2
    assert not (tmp_path / "runs").exists() and message.split(":")[0] in capsys.readouterr().err
