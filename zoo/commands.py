"""What each ``zoo`` subcommand does, once its arguments are parsed."""

from pathlib import Path

from rich.console import Console

from zoo.config import compose, task_names, to_yaml
from zoo.errors import ConfigError

console = Console(highlight=False)


def say(message: str) -> None:
    console.print(message)


def list_names(what: str | None) -> int:
    from zoo.paths import data_dir
    from zoo.registry import ARCHS, DATASETS, METHODS

    listings = {
        "methods": sorted(METHODS.declared()),
        "archs": sorted(ARCHS.declared()),
        "datasets": sorted(DATASETS.declared()),
        "tasks": task_names(),
        "models": sorted(p.stem for p in data_dir("models").glob("*.yaml")),
    }
    for kind in [what] if what else listings:
        names = listings[kind]
        console.print(f"[bold]{kind}[/bold] ({len(names)}): " + (", ".join(names) if names else "none yet"))
    return 0


def show(task: str, overrides: list[str]) -> int:
    print(to_yaml(compose(task, overrides)), end="")
    return 0


def train(task: str, overrides: list[str]) -> int:
    from zoo.train import train as train_run

    result = train_run(compose(task, overrides), say=say)
    if result is not None:
        say(f"record: {result.run_dir / 'record.json'}")
    return 0


def evaluate_run(run: str, split: str) -> int:
    from zoo.export.sources import load_run

    loaded = load_run(Path(run))
    if split not in loaded.datamodule.splits:
        raise ConfigError(f"unknown split '{split}'", f"valid splits: {', '.join(loaded.datamodule.splits)}")
    doc_encoder = None
    if hasattr(loaded.datamodule, "sources"):  # a retrieval run: its index is built with the frozen doc encoder
        from zoo.retrieval.commands import document_encoder

        doc_encoder = document_encoder(loaded)
    metrics = loaded.datamodule.evaluate([loaded.student], split, doc_encoder=doc_encoder)
    for name, value in metrics.items():
        say(f"{name}: {value:.4f}")
    return 0


def reproduce(task: str, seeds: int | None, overrides: list[str], only: list[str] | None = None) -> int:
    from zoo.reproduce import reproduce as reproduce_task

    return 0 if reproduce_task(task, seeds, overrides, console, only) else 1


def leaderboard(adds: list[str]) -> int:
    from zoo import leaderboard as boards

    for path in boards.add([Path(a) for a in adds]):
        say(f"added {path}")
    for path in boards.regenerate():
        say(f"wrote {path}")
    return 0
