"""The ``zoo`` command.

    zoo train task=NAME [key=value ...]       train (teacher first if needed), evaluate, write a run folder
    zoo eval run=RUN_DIR [split=test]          re-evaluate a run's student from its folder
    zoo list [methods|archs|datasets|tasks|models]
    zoo show task=NAME [key=value ...]        print the resolved config
    zoo reproduce task=NAME [seeds=N] [arms=a,b] [key=value ...]   every arm (or those named) over N seeds,
                                               mean ± std, OK/FAIL
    zoo export run=RUN_DIR|model=CARD [profile=default] [out=DIR]   checked ONNX folder (parity + metric)
    zoo infer model=EXPORT_DIR inputs=FILE.npy  top-1 per row with numpy + onnxruntime only
    zoo bench run=RUN_DIR|model=EXPORT_DIR [batches=1,8,32]   eager vs onnxruntime latency/throughput
    zoo publish run=RUN_DIR to=DIR             weights + card (sha256, size) + record, as a download mirror
    zoo download NAME                          fetch and verify a model card's weights, print their path
    zoo leaderboard [add=RUN_DIR|RECORD|REPRODUCE_SUMMARY ...]   regenerate leaderboards/ from records
    zoo index run=RUN_DIR [out=DIR] [quant_scale=100]   Lucene impact index of a retrieval run's corpus
    zoo search index=DIR run=RUN_DIR queries=FILE.tsv [k=100] [out=run.trec]   search it with the run's student

Heavy imports (torch, Lightning) happen inside the commands that need them, so
``zoo --help`` and ``zoo list`` answer at once. Errors print one line (and a
hint) and exit with code 2; ``--debug`` shows the traceback instead.
"""

import argparse
import sys

from zoo.errors import ConfigError, ZooError

COMMANDS = ("train", "eval", "list", "show", "reproduce", "leaderboard", "download", "export", "infer", "bench",
            "publish", "index", "search")
RETRIEVAL_KEYS = {"index": ("run", "out", "quant_scale"), "search": ("index", "run", "queries", "k", "out")}
SHIPPING_KEYS = ("run", "model", "profile", "out", "inputs", "batches", "warmup", "iters", "threads", "to")
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
                       ("reproduce", "run a task's arms over seeds: task=NAME seeds=N [arms=a,b] [key=value ...]"),
                       ("leaderboard", "add run records (add=PATH ...), then regenerate leaderboards/"),
                       ("export", "export a student to ONNX, checked: run=RUN_DIR | model=CARD [profile=default] "
                                  "[out=DIR]"),
                       ("infer", "top-1 per row with an exported model (numpy + onnxruntime only): "
                                 "model=DIR inputs=FILE.npy"),
                       ("bench", "eager vs onnxruntime speed: run=RUN_DIR | model=EXPORT_DIR [batches=1,8,32] "
                                 "[warmup=10] [iters=100] [threads=N]"),
                       ("publish", "publish a run for `zoo download`: run=RUN_DIR to=DIR [base_url=URL]"),
                       ("index", "Lucene impact index of a retrieval run's corpus with its frozen document encoder: "
                                 "run=RUN_DIR [out=DIR] [quant_scale=100]"),
                       ("search", "search an index with a retrieval run's query encoder: index=DIR run=RUN_DIR "
                                  "queries=FILE.tsv [k=100] [out=run.trec]")):
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


def integer(values: dict, key: str, default: int | None) -> int | None:
    if values[key] is None:
        return default
    if not values[key].isdigit():
        raise ConfigError(f"{key} must be a non-negative integer, got '{values[key]}'")
    return int(values[key])


def run_shipping_command(options: argparse.Namespace) -> int:
    """export / infer / bench / publish: key=value arguments only, no config overrides."""
    values, rest = {}, list(options.args)
    for key in (*SHIPPING_KEYS, "base_url"):
        values[key], rest = take(rest, key, required=False)
    if rest:
        raise ConfigError(f"zoo {options.command} got unexpected arguments: {' '.join(rest)}",
                          f"see zoo {options.command} --help")
    if options.command == "infer":  # torch-free: numpy + onnxruntime
        from zoo.export.runtime import infer_command

        take(options.args, "model"), take(options.args, "inputs")
        return infer_command(values["model"], values["inputs"])
    if options.command == "export":
        from zoo.export.onnx_export import export_command

        return export_command(values["run"], values["model"], values["profile"] or "default", values["out"])
    if options.command == "publish":
        from zoo.publish import publish_command

        take(options.args, "run"), take(options.args, "to")
        return publish_command(values["run"], values["to"], values["base_url"])
    from zoo.export.bench import bench_command

    batches = values["batches"]
    if batches is not None and not all(b.isdigit() for b in batches.split(",")):
        raise ConfigError(f"batches must look like 1,8,32, got '{batches}'")
    return bench_command(run=values["run"], model=values["model"],
                         batches=[int(b) for b in batches.split(",")] if batches else None,
                         warmup=integer(values, "warmup", 10), iters=integer(values, "iters", 100),
                         threads=integer(values, "threads", None), profile=values["profile"] or "default")


def run_retrieval_command(options: argparse.Namespace) -> int:
    """index / search: key=value arguments only."""
    from zoo.retrieval import commands as retrieval

    values, rest = {}, list(options.args)
    for key in RETRIEVAL_KEYS[options.command]:
        values[key], rest = take(rest, key, required=False)
    if rest:
        raise ConfigError(f"zoo {options.command} got unexpected arguments: {' '.join(rest)}",
                          f"see zoo {options.command} --help")
    take(options.args, "run")
    if options.command == "index":
        scale = values["quant_scale"]
        return retrieval.index_command(values["run"], values["out"], float(scale) if scale else 100.0)
    take(options.args, "index"), take(options.args, "queries")
    return retrieval.search_command(values["index"], values["run"], values["queries"],
                                    integer(values, "k", 100), values["out"])


def run_command(options: argparse.Namespace) -> int:
    if options.command in ("export", "infer", "bench", "publish"):
        return run_shipping_command(options)
    if options.command in ("index", "search"):
        return run_retrieval_command(options)
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
    arms, overrides = take(overrides, "arms", required=False)
    return commands.reproduce(task, int(seeds) if seeds else None, overrides,
                              [a for a in arms.split(",") if a] if arms else None)


if __name__ == "__main__":
    raise SystemExit(main())
