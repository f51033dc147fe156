"""``zoo list``: the registered names, read without importing torch."""

from zoo.commands.base import Arguments, Command

LISTABLE = ("methods", "archs", "datasets", "kinds", "selectors", "tasks", "models")


def list_names(arguments: Arguments, reporter) -> int:
    from zoo.config import task_names
    from zoo.paths import data_dir
    from zoo.registry import ARCHS, DATASETS, KINDS, METHODS, SELECTORS

    listings = {
        "methods": lambda: sorted(METHODS.declared()),
        "archs": lambda: sorted(ARCHS.declared()),
        "datasets": lambda: sorted(DATASETS.declared()),
        "kinds": lambda: sorted(KINDS.declared()),
        "selectors": lambda: sorted(SELECTORS.declared()),  # an active run's (zoo.active)
        "tasks": task_names,
        "models": lambda: sorted(p.stem for p in data_dir("models").glob("*.yaml")),
    }
    for what in [arguments.positional] if arguments.positional else LISTABLE:
        names = listings[what]()
        reporter.say(f"[bold]{what}[/bold] ({len(names)}): " + (", ".join(names) if names else "none yet"))
    return 0


COMMANDS = [Command("list", "list registered names", list_names, positional="WHAT", choices=LISTABLE)]
