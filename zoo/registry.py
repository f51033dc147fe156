"""Name -> builder registries with lazy discovery of one package.

A lookup that misses imports every module of the registry's package once and
tries again, so a builder is found whether or not anyone remembered to import
its module. ``declared()`` lists names without importing anything: it reads the
``@REGISTRY.register("name")`` calls from the package's source, which keeps
``zoo list`` free of torch.

A **family** stands for names too many to list, each of which spells its own
settings (``cifar_resnet.d1-3-7.w8-16-32``: an architecture search space such
as DisWOT's, where every candidate must be a name that configs, records and
cards can carry). ``register_family(prefix, parse, pattern)`` hands every name
that starts with ``prefix`` and is not an exact name to ``parse``, which returns
the builder or raises ``UnknownNameError`` naming ``pattern``. ``names()``
stays the list of exact, buildable names; ``patterns()`` lists the families,
and ``declared()`` shows both (a family by its pattern), so ``zoo list`` shows
what can be asked for.

Lookup order: an exact name; then, after discovery, the family with the longest
prefix the name starts with; else an error listing the nearest exact name and
the family patterns. Registering a name, or a family prefix, twice is an error.
"""

import ast
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import UnknownNameError, did_you_mean


@dataclass(frozen=True)
class Family:
    prefix: str  # every name starting with it is this family's to parse
    parse: Callable[[str], Any]  # name -> builder, or UnknownNameError
    pattern: str  # what its names look like, for messages and listings


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind = kind  # "method", "arch", "dataset", "kind": used in messages
        self.package = package
        self._entries: dict[str, Any] = {}
        self._families: dict[str, Family] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: ``@ARCHS.register("mlp.tiny")``. A name taken twice is an error."""

        def add(obj: Any) -> Any:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice "
                                 f"({self._entries[name].__module__} and {obj.__module__})")
            self._entries[name] = obj
            return obj

        return add

    def register_family(self, prefix: str, parse: Callable[[str], Any], pattern: str) -> None:
        """``ARCHS.register_family("cifar_resnet.", parse, pattern="cifar_resnet.d<a>-<b>-<c>")``.

        Give ``prefix`` and ``pattern`` as string literals (or module-level string constants) so that
        ``declared()`` can read them from the source. A prefix taken twice is an error.
        """
        family = Family(prefix, parse, pattern)
        taken = self._families.get(prefix)
        if taken is not None and taken != family:
            raise ValueError(f"{self.kind} family '{prefix}' is registered twice "
                             f"({taken.parse.__module__} and {parse.__module__})")
        self._families[prefix] = family

    def get(self, name: str) -> Any:
        """The builder of an exact name, else the one its family parses; a miss lists names and patterns."""
        if name not in self._entries:
            self._discover()  # before any family: an exact name in a module not yet imported wins
        if name in self._entries:
            return self._entries[name]
        family = self.family_of(name)
        if family is not None:
            return family.parse(name)
        hint = did_you_mean(name, self._entries, f"{self.kind}s")
        if self._families:
            hint += "; or a name of a family: " + ", ".join(self.patterns())
        raise UnknownNameError(f"unknown {self.kind} '{name}'", hint)

    def names(self) -> list[str]:
        """Every exact registered name (imports the package). Family members are not names here: see patterns()."""
        self._discover()
        return sorted(self._entries)

    def patterns(self) -> list[str]:
        """The pattern of every registered family (imports the package); a pattern is not itself buildable."""
        self._discover()
        return sorted(family.pattern for family in self._families.values())

    def declared(self) -> dict[str, str]:
        """name or family pattern -> module, read from the package's source without importing it."""
        found: dict[str, str] = {}
        for path in sorted(self._package_dir().glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            module = f"{self.package}.{path.stem}"
            constants = _string_constants(tree)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                    continue
                if node.func.attr == "register" and (name := _literal(node.args[0], constants)) is not None:
                    found[name] = module
                elif node.func.attr == "register_family":
                    given = node.args[2] if len(node.args) > 2 else next(
                        (k.value for k in node.keywords if k.arg == "pattern"), None)
                    if (pattern := _literal(given, constants)) is not None:
                        found[pattern] = module
        return found

    def family_of(self, name: str) -> Family | None:
        """The family ``name`` would be parsed by, if it is not an exact name: the longest matching prefix's."""
        self._discover()
        matching = [f for prefix, f in self._families.items() if name.startswith(prefix)]
        return max(matching, key=lambda f: len(f.prefix), default=None)

    def _package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        return Path(next(iter(spec.submodule_search_locations)))

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments, so a registration may name a constant instead of a literal."""
    return {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            for target in node.targets if isinstance(target, ast.Name)}


def _literal(node: ast.AST | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


METHODS = Registry("method", "zoo.methods")
ARCHS = Registry("arch", "zoo.archs")
DATASETS = Registry("dataset", "zoo.data")
KINDS = Registry("kind", "zoo.kinds")
SELECTORS = Registry("selector", "zoo.selectors")
