"""``zoo train`` and ``zoo show``: a task's config, composed and overridden, trained or printed.

``zoo train task=T run.id=ID`` (or ``zoo train run=RUN_DIR``) of a run that exists resumes it with the config it was
started with (``zoo.runs.run_config``): its overrides need not be repeated.
"""

from zoo.commands.base import Arguments, Command, exactly_one


def train(arguments: Arguments, reporter) -> int:
    from zoo.runs import run_config
    from zoo.train import train as train_run

    exactly_one(arguments, "train", "task", "run")
    cfg = run_config(arguments.get("task"), arguments.overrides, arguments.get("run"))
    result = train_run(cfg, say=reporter.say)
    if result is not None:  # None on the non-zero ranks of a distributed run
        reporter.say(f"record: {result.run_dir / 'record.json'}")
    return 0


def show(arguments: Arguments, reporter) -> int:
    from zoo.config import compose, to_yaml

    reporter.data(to_yaml(compose(arguments.get("task"), arguments.overrides)).rstrip("\n"))
    return 0


COMMANDS = [
    Command("train", "train a task's student (its teacher first when none is stored), evaluate, write a run folder; "
            "an unfinished run resumes by its id (run.id=ID) or folder (run=RUN_DIR) alone",
            train, keys={"task": "NAME", "run": "RUN_DIR"}, overrides=True),
    Command("show", "print a task's resolved config", show, keys={"task": "NAME"}, required=("task",),
            overrides=True),
]
