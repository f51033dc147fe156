"""``zoo list``: the registered names, read without importing torch; models with the source of each."""

from zoo.commands.base import Arguments, Command

LISTABLE = ("methods", "archs", "datasets", "kinds", "selectors", "tasks", "models")


def list_names(arguments: Arguments, reporter) -> int:
    from zoo.config import task_names
    from zoo.registry import ARCHS, DATASETS, KINDS, METHODS, SELECTORS

    listings = {
        "methods": lambda: sorted(METHODS.declared()),
        "archs": lambda: sorted(ARCHS.declared()),
        "datasets": lambda: sorted(DATASETS.declared()),
        "kinds": lambda: sorted(KINDS.declared()),
        "selectors": lambda: sorted(SELECTORS.declared()),  # an active run's (zoo.active)
        "tasks": task_names,
    }
    for what in [arguments.positional] if arguments.positional else LISTABLE:
        if what == "models":
            list_models(reporter)
            continue
        names = listings[what]()
        reporter.say(f"[bold]{what}[/bold] ({len(names)}): " + (", ".join(names) if names else "none yet"))
    return 0


def list_models(reporter) -> None:
    """One line per reachable card: name, source, and the file or the mirror's version."""
    from rich.markup import escape

    from zoo.catalog import catalog

    found = catalog()
    reporter.say(f"[bold]models[/bold] ({len(found.entries)}):")
    width = max((len(name) for name in found.entries), default=0)
    for entry in found.entries.values():
        reporter.say(escape(f"  {entry.name:<{width}}  {entry.source}  ({entry.detail})"))
    for problem in found.unreachable:
        reporter.warn(f"not listed: {problem}")


COMMANDS = [Command("list", "list registered names (models: every reachable card and its source)", list_names,
                    positional="WHAT", choices=LISTABLE)]
