"""Name -> builder registries with lazy discovery of one package.

A lookup that misses imports every module of the registry's package once and
tries again, so a builder is found whether or not anyone remembered to import
its module. ``declared()`` lists names without importing anything: it reads the
``@REGISTRY.register("name")`` calls from the package's source, which keeps
``zoo list`` free of torch.
"""

import ast
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.errors import UnknownNameError, did_you_mean


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind = kind  # "method", "arch", "dataset", "kind": used in messages
        self.package = package
        self._entries: dict[str, Any] = {}
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

    def get(self, name: str) -> Any:
        if name not in self._entries:
            self._discover()
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} '{name}'",
                                   did_you_mean(name, self._entries, f"{self.kind}s"))
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name (imports the package)."""
        self._discover()
        return sorted(self._entries)

    def declared(self) -> dict[str, str]:
        """name -> module, read from the package's source without importing it."""
        found: dict[str, str] = {}
        for path in sorted(self._package_dir().glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "register" and node.args
                        and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)):
                    found[node.args[0].value] = f"{self.package}.{path.stem}"
        return found

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


METHODS = Registry("method", "zoo.methods")
ARCHS = Registry("arch", "zoo.archs")
DATASETS = Registry("dataset", "zoo.data")
KINDS = Registry("kind", "zoo.kinds")
SELECTORS = Registry("selector", "zoo.selectors")
