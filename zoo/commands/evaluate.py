"""``zoo eval``: a run folder's student evaluated again, by its task's kind."""

from pathlib import Path

from zoo.commands.base import Arguments, Command


def evaluate(arguments: Arguments, reporter) -> int:
    from zoo.evaluation import evaluate_run

    for name, value in evaluate_run(Path(arguments.get("run")), arguments.get("split", "test")).items():
        reporter.say(f"{name}: {value:.4f}")
    return 0


COMMANDS = [Command("eval", "evaluate a run folder's student again", evaluate,
                    keys={"run": "RUN_DIR", "split": "test"}, required=("run",))]
