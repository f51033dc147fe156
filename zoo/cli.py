"""The ``zoo`` command: argv -> one of ``zoo.commands``' declared commands -> its exit code.

    zoo train task=NAME [key=value ...]       train (teacher first if needed), evaluate, write a run folder
    zoo eval run=RUN_DIR [split=test]          re-evaluate a run's student from its folder
    zoo reproduce task=NAME [seeds=N] [arms=a,b] [key=value ...]   every arm (or those named) over N seeds,
                                               mean ± std, OK/FAIL
    zoo list [methods|archs|datasets|kinds|tasks|models]
    zoo show task=NAME [key=value ...]        print the resolved config
    zoo export run=RUN_DIR|model=CARD [profile=NAME] [out=DIR]   checked ONNX folder (parity + metric)
    zoo infer model=EXPORT_DIR|NAME inputs=FILE.npy   top-1 per row with numpy + onnxruntime only
    zoo bench run=RUN_DIR|model=EXPORT_DIR [batches=1,8,32]   eager vs onnxruntime latency/throughput
    zoo publish run=RUN_DIR|best=RUNS_DIR to=DIR|hf-hub:org/repo [name=ARCH.TAG]   weights + card (sha256, size)
                                               + record, in a mirror folder (with its index.json) or a Hub repo
    zoo mirror [add=URL|DIR] [remove=URL|DIR]  the mirrors model cards are found in ($ZOO_HOME/config.yaml)
    zoo download NAME                          fetch and verify a model's weights by name (any source,
                                               hf-hub:org/repo[@rev]), print their path
    zoo leaderboard [add=RUN_DIR|RECORD|REPRODUCE_SUMMARY ...]   regenerate leaderboards/ from records
    zoo index run=RUN_DIR [out=DIR] [quant_scale=100]   index a retrieval run's corpus
    zoo search index=DIR run=RUN_DIR queries=FILE.tsv [k=100] [out=run.trec] [engine=auto]   search it with the
                                               run's student (Lucene or brute force, auto: the faster here)

Errors print one line (and a hint) and exit with code 2; ``--debug`` shows the traceback instead. The environment's
refusals (a full disk, a read-only or misplaced folder, an unreachable Hub) are errors too, named by path
(``zoo.errors.environment_error``). Ctrl-C exits with 130, saying what was kept and how to resume where a run was
training.
"""

import argparse
import sys

from zoo.commands import COMMANDS
from zoo.commands.report import Reporter
from zoo.errors import Interrupted, ZooError, environment_error


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="zoo", description="A knowledge-distillation model zoo.",
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog=__doc__.split("\n\n")[1])
    top.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        one = sub.add_parser(command.name, help=command.summary, description=f"{command.summary}\n\n{command.usage()}",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        one.add_argument("args", nargs="*", metavar="key=value")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parser().parse_args(argv)
    if options.command is None:
        parser().print_help()
        return 0
    reporter = Reporter()
    reporter.capture_warnings()
    command = COMMANDS[options.command]
    try:
        return command.run(command.parse(options.args), reporter)
    except (ZooError, OSError) as err:
        error = err if isinstance(err, ZooError) else environment_error(err)
        if options.debug or error is None:  # an OSError that is no fault of the environment is a bug: traceback
            raise
        reporter.error(error)
        return 130 if isinstance(error, Interrupted) else 2
    except KeyboardInterrupt:
        reporter.note("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
