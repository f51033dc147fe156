import subprocess
import sys

import pytest

from zoo.errors import UnknownNameError
from zoo.registry import ARCHS, DATASETS, METHODS, Registry


def test_lookup_discovers_modules_nobody_imported(tmp_path, monkeypatch):
    """A miss imports every module of the registry's package once and retries (a plugin package made here, so the
    check runs in-process without importing torch a second time)."""
    package = tmp_path / "zoo_test_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "thing.py").write_text("from zoo_test_registry import THINGS\n\n\n"
                                      "@THINGS.register('thing.one')\nclass One:\n    pass\n")
    (tmp_path / "zoo_test_registry.py").write_text("from zoo.registry import Registry\n\n"
                                                  "THINGS = Registry('thing', 'zoo_test_plugins')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("zoo_test_registry", "zoo_test_plugins", "zoo_test_plugins.thing"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    from zoo_test_registry import THINGS

    assert THINGS.declared() == {"thing.one": "zoo_test_plugins.thing"}  # read from the source
    assert "zoo_test_plugins.thing" not in sys.modules
    assert THINGS.get("thing.one").__module__ == "zoo_test_plugins.thing"
    with pytest.raises(UnknownNameError, match="unknown thing 'thing.two'"):
        THINGS.get("thing.two")
    for name in ("zoo_test_registry", "zoo_test_plugins", "zoo_test_plugins.thing"):
        sys.modules.pop(name, None)


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
