"""``zoo train`` and ``zoo show``: a task's config, composed and overridden, trained or printed."""

from zoo.commands.base import Arguments, Command


def train(arguments: Arguments, reporter) -> int:
    from zoo.config import compose
    from zoo.train import train as train_run

    result = train_run(compose(arguments.get("task"), arguments.overrides), say=reporter.say)
    if result is not None:  # None on the non-zero ranks of a distributed run
        reporter.say(f"record: {result.run_dir / 'record.json'}")
    return 0


def show(arguments: Arguments, reporter) -> int:
    from zoo.config import compose, to_yaml

    reporter.data(to_yaml(compose(arguments.get("task"), arguments.overrides)).rstrip("\n"))
    return 0


COMMANDS = [
    Command("train", "train a task's student (its teacher first when none is stored), evaluate, write a run folder",
            train, keys={"task": "NAME"}, required=("task",), overrides=True),
    Command("show", "print a task's resolved config", show, keys={"task": "NAME"}, required=("task",),
            overrides=True),
]
