"""The spine's layering, checked from the source: no import cycle inside zoo/ (imports inside functions count:
they only hide one), the command layer imported by the CLI alone, and no code that guesses a task's kind from
attributes (``hasattr``) instead of reading the kind its data module declares."""

import ast
import functools

from tests.helpers import ROOT

PACKAGE = ROOT / "zoo"
# hasattr on a third-party module, to tell its versions apart, is not a kind guess: the only ones allowed.
MODULE_FEATURE_CHECKS = {("zoo.archs.detr", "transformers")}


@functools.cache
def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return found


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The zoo modules ``tree`` imports, anywhere in it (``from zoo.x import y`` counts zoo.x.y if that is one)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in out if name in known}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_zoo():
    trees = modules()
    known = set(trees)
    # zoo/__init__.py holds __version__ and a lazy create_model: importing "zoo" itself is not an edge back.
    graph = {name: {dep for dep in imports(tree, known) if dep not in (name, "zoo")}
             for name, tree in trees.items() if name != "zoo"}
    assert cycles(graph) == []


def test_only_the_cli_imports_the_command_layer():
    trees = modules()
    offenders = [name for name, tree in trees.items()
                 if name != "zoo.cli" and not name.startswith("zoo.commands")
                 and any(dep.startswith("zoo.commands") for dep in imports(tree, set(trees)))]
    assert offenders == []


def test_no_hasattr_guesses_in_zoo():
    guesses = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
                subject = ast.unparse(node.args[0])
                if (name, subject) not in MODULE_FEATURE_CHECKS:
                    guesses.append(f"{name}:{node.lineno} hasattr({subject}, ...)")
    assert guesses == []


def test_every_data_module_declares_a_known_kind():
    from zoo.kinds import STAGE_ONLY_KINDS
    from zoo.registry import DATASETS, KINDS

    for name in DATASETS.names():
        assert DATASETS.get(name).kind in (*KINDS.names(), *STAGE_ONLY_KINDS), name


def test_every_kind_names_its_headline_evaluation_and_exporter():
    """Importing every kind module imports its evaluator and exporter: a renamed function fails here, not in the
    first export of a real run."""
    from zoo.registry import KINDS

    assert set(KINDS.names()) >= {"image_classification", "detection", "retrieval"}
    for name in KINDS.names():
        kind = KINDS.get(name)
        assert kind.name == name and kind.headline_metric.startswith("test/")
        assert callable(kind.evaluate) and callable(kind.run_context)
        assert kind.export is None or callable(kind.export)
