"""``zoo leaderboard [add=PATH ...]``: run records added, then every leaderboard regenerated."""

from pathlib import Path

from zoo.commands.base import Arguments, Command


def leaderboard(arguments: Arguments, reporter) -> int:
    from zoo import leaderboard as boards

    for path in boards.add([Path(p) for p in arguments.repeated.get("add", [])]):
        reporter.say(f"added {path}")
    for path in boards.regenerate():
        reporter.say(f"wrote {path}")
    return 0


COMMANDS = [Command("leaderboard", "add run records (a run folder, a record, a reproduce summary), then regenerate "
                    "leaderboards/", leaderboard, keys={"add": "PATH"}, repeatable=("add",))]
