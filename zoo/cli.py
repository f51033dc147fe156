"""The ``zoo`` command.

    zoo train task=NAME [key=value ...]       train (teacher first if needed), evaluate, write a run folder
    zoo eval run=RUN_DIR [split=test]          re-evaluate a run's student from its folder
    zoo list [methods|archs|datasets|tasks|models]
    zoo show task=NAME [key=value ...]        print the resolved config
    zoo reproduce task=NAME [seeds=N] [key=value ...]   every arm over N seeds, mean ± std, OK/FAIL
    zoo download NAME                          fetch and verify a model card's weights, print their path
    zoo leaderboard [add=RUN_DIR|RECORD|REPRODUCE_SUMMARY ...]   regenerate leaderboards/ from records

Heavy imports (torch, Lightning) happen inside the commands that need them, so
``zoo --help`` and ``zoo list`` answer at once. Errors print one line (and a
hint) and exit with code 2; ``--debug`` shows the traceback instead.
"""

import argparse
import sys

from zoo.errors import ConfigError, ZooError

COMMANDS = ("train", "eval", "list", "show", "reproduce", "leaderboard", "download")
LISTABLE = ("methods", "archs", "datasets", "tasks", "models")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="zoo", description="A knowledge-distillation model zoo.",
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog=__doc__.split("\n\n")[1])
    top.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("train", "train a task's student (and its teacher when none is given)"),
                       ("eval", "evaluate a run folder's student: run=RUN_DIR [split=test]"),
                       ("show", "print a task's resolved config: task=NAME [key=value ...]"),
                       ("reproduce", "run a task's arms over seeds: task=NAME seeds=N [key=value ...]"),
                       ("leaderboard", "add run records (add=PATH ...), then regenerate leaderboards/")):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("args", nargs="*", metavar="key=value")
    fetch = sub.add_parser("download", help="fetch and verify a model card's weights, print their path",
                           description="fetch and verify a model card's weights, print their path")
    fetch.add_argument("name", metavar="NAME", help="a model card, e.g. resnet50.mealv2_in1k")
    listing = sub.add_parser("list", help="list registered names", description="list registered names")
    listing.add_argument("what", nargs="?", choices=LISTABLE, help="one kind (default: all)")
    return top


def take(args: list[str], key: str, required: bool = True) -> tuple[str | None, list[str]]:
    """Pull ``key=value`` out of ``args``; the rest are config overrides."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{key}=")]
    rest = [a for a in args if not a.startswith(f"{key}=")]
    if not values and required:
        raise ConfigError(f"missing {key}=...", f"e.g. zoo {'train task=kd_digits' if key == 'task' else key + '=...'}")
    return (values[-1] if values else None), rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parser().parse_args(argv)
    if options.command is None:
        parser().print_help()
        return 0
    try:
        return run_command(options)
    except ZooError as err:
        if options.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run_command(options: argparse.Namespace) -> int:
    from zoo import commands

    if options.command == "list":
        return commands.list_names(options.what)
    if options.command == "eval":
        run, rest = take(options.args, "run")
        split, rest = take(rest, "split", required=False)
        if rest:
            raise ConfigError(f"zoo eval takes run= and split= only, got {' '.join(rest)}")
        return commands.evaluate_run(run, split or "test")
    if options.command == "download":
        from zoo.models_api import download_command

        return download_command(options.name)
    if options.command == "leaderboard":
        adds = [a.split("=", 1)[1] for a in options.args if a.startswith("add=")]
        if len(adds) != len(options.args):
            raise ConfigError("zoo leaderboard takes add=PATH arguments only")
        return commands.leaderboard(adds)
    task, overrides = take(options.args, "task")
    if options.command == "show":
        return commands.show(task, overrides)
    if options.command == "train":
        return commands.train(task, overrides)
    seeds, overrides = take(overrides, "seeds", required=False)
    if seeds is not None and not seeds.isdigit():
        raise ConfigError(f"seeds must be a positive integer, got '{seeds}'")
    return commands.reproduce(task, int(seeds) if seeds else None, overrides)


if __name__ == "__main__":
    raise SystemExit(main())
