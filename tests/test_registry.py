import subprocess
import sys

import pytest

from zoo.errors import UnknownNameError
from zoo.registry import ARCHS, DATASETS, METHODS, Registry


def test_lookup_discovers_modules_nobody_imported():
    code = ("import sys; from zoo.registry import METHODS; "
            "assert 'zoo.methods.kd' not in sys.modules; "
            "cls = METHODS.get('kd'); assert cls.__module__ == 'zoo.methods.kd', cls")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_miss_suggests_the_nearest_name():
    with pytest.raises(UnknownNameError, match="unknown arch 'mlp.tinny'") as err:
        ARCHS.get("mlp.tinny")
    assert "did you mean 'mlp.tiny'" in err.value.hint


def test_registering_a_name_twice_is_an_error():
    registry = Registry("thing", "zoo.methods")
    registry.register("a")(object)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(int)


@pytest.mark.parametrize("registry", [METHODS, ARCHS, DATASETS])
def test_declared_names_match_imported_names(registry):
    assert sorted(registry.declared()) == registry.names()


def test_help_and_list_do_not_import_torch():
    code = ("import sys; from zoo.cli import main; main(['list']); "
            "heavy = [m for m in ('torch', 'lightning', 'timm') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "zoo", "--help"], check=True, capture_output=True, text=True)
    assert "reproduce" in out.stdout


def test_timm_archs_name_real_timm_models_with_weights():
    """Every timm-backed arch (MEAL V2's teachers and students by exact tag) exists in the installed timm."""
    import timm

    from zoo.registry import ARCHS

    declared = ARCHS.declared()
    timm_names = [name for name, module in declared.items() if module.endswith("timm_nets")]
    assert {"senet154.gluon_in1k", "resnet152s.gluon_in1k", "resnet50.ram_in1k"} <= set(timm_names)
    for name in timm_names:
        assert timm.is_model(name), name
        if "." in name:
            assert name in timm.list_pretrained(name), f"{name}: no published weights under that tag"
