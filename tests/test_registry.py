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
    assert sorted(registry.declared()) == sorted(registry.names() + registry.patterns())


@pytest.fixture
def empty_package(tmp_path, monkeypatch) -> str:
    """An importable package with no modules, for a registry whose discovery must find nothing."""
    (tmp_path / "zoo_test_empty").mkdir()
    (tmp_path / "zoo_test_empty" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "zoo_test_empty", raising=False)
    yield "zoo_test_empty"
    sys.modules.pop("zoo_test_empty", None)


def sizes(name: str):
    """A toy family: ``size.<n>`` builds n (for the registry's own tests)."""
    if not name.removeprefix("size.").isdigit():
        raise UnknownNameError(f"unknown thing '{name}': names follow size.<n>")
    return int(name.removeprefix("size."))


def test_a_family_builds_its_names_and_an_exact_name_wins(empty_package):
    registry = Registry("thing", empty_package)
    registry.register_family("size.", sizes, pattern="size.<n>")
    registry.register("size.7")("seven")
    assert registry.get("size.3") == 3 and registry.get("size.7") == "seven"
    assert registry.names() == ["size.7"] and registry.patterns() == ["size.<n>"]
    with pytest.raises(UnknownNameError, match="names follow size.<n>"):
        registry.get("size.x")
    with pytest.raises(UnknownNameError, match="unknown thing 'sise.3'") as err:
        registry.get("sise.3")
    assert "did you mean 'size.7'" in err.value.hint and "size.<n>" in err.value.hint


def test_the_longest_family_prefix_wins(empty_package):
    registry = Registry("thing", empty_package)
    registry.register_family("size.", sizes, pattern="size.<n>")
    registry.register_family("size.big.", lambda name: "big", pattern="size.big.<anything>")
    assert registry.get("size.big.9") == "big" and registry.get("size.9") == 9
    assert registry.family_of("size.big.9").pattern == "size.big.<anything>" and registry.family_of("x") is None


def test_registering_a_family_prefix_twice_is_an_error(empty_package):
    registry = Registry("thing", empty_package)
    registry.register_family("size.", sizes, pattern="size.<n>")
    registry.register_family("size.", sizes, pattern="size.<n>")  # the same family again (a re-import) is fine
    with pytest.raises(ValueError, match="family 'size.' is registered twice"):
        registry.register_family("size.", lambda name: 0, pattern="size.<n>")


def test_unknown_arch_hint_lists_family_patterns():
    with pytest.raises(UnknownNameError) as err:
        ARCHS.get("cifar_resnetd3")
    assert "cifar_resnet.d<a>-<b>-<c>[.w<x>-<y>-<z>]" in err.value.hint


def test_declared_shows_family_patterns_and_zoo_list_prints_them(tmp_path, monkeypatch):
    assert ARCHS.declared()["cifar_resnet.d<a>-<b>-<c>[.w<x>-<y>-<z>]"] == "zoo.archs.cifar_resnet"
    assert ARCHS.declared()["resnet20.cifar"] == "zoo.archs.cifar_resnet"
    package = tmp_path / "zoo_test_families"  # literal and constant patterns, read without importing
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "fam.py").write_text("from zoo_test_registry_f import THINGS\n\nPATTERN = 'b.<n>'\n\n"
                                    "THINGS.register_family('a.', int, pattern='a.<n>')\n"
                                    "THINGS.register_family('b.', int, PATTERN)\n")
    (tmp_path / "zoo_test_registry_f.py").write_text("from zoo.registry import Registry\n\n"
                                                    "THINGS = Registry('thing', 'zoo_test_families')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from zoo_test_registry_f import THINGS

    assert THINGS.declared() == {"a.<n>": "zoo_test_families.fam", "b.<n>": "zoo_test_families.fam"}
    assert "zoo_test_families.fam" not in sys.modules
    for name in ("zoo_test_registry_f", "zoo_test_families"):
        sys.modules.pop(name, None)
    out = subprocess.run([sys.executable, "-m", "zoo", "list", "archs"], check=True, capture_output=True, text=True)
    assert "cifar_resnet.d<a>-<b>-<c>[.w<x>-<y>-<z>]" in out.stdout and "resnet110.cifar" in out.stdout


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
