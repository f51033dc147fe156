"""``zoo find-student``: rank a task's candidate students for its teacher without training them (DisWOT)."""

from zoo.commands.base import Arguments, Command

SHOWN = ("diswot", "diswot_sem", "diswot_rel", "synflow", "nwot")


def find_student(arguments: Arguments, reporter) -> int:
    from zoo.config import compose
    from zoo.errors import ConfigError
    from zoo.search.run import find_student as run_search

    cfg = compose(arguments.get("task"), arguments.overrides)
    if cfg.get("search") is None:
        raise ConfigError(f"task {cfg.task} has no search block", "try task=diswot_digits")
    result = run_search(cfg, say=reporter.say)
    ranking = result.summary["ranking"]
    top = int(arguments.integer("top", 10, minimum=1))
    header = f"{'rank':>4}  {'candidate':<28} {'params':>9} {'MFLOPs':>8} " + \
        " ".join(f"{p:>11}" for p in SHOWN) + f" {'s':>6}"
    lines = [header] + [f"{i:>4}  {e['name']:<28} {e['params']:>9,} {e['mflops']:>8.3g} "
                        + " ".join(f"{e['scores'][p]:>11.4g}" for p in SHOWN) + f" {e['seconds']:>6.2f}"
                        for i, e in enumerate(ranking[:top], start=1)]
    reporter.data("\n".join(lines))
    reporter.say(f"winner by {result.summary['proxy']}: {result.winner} "
                 f"({result.summary['candidates_scored']} candidates scored in {result.summary['seconds']:.1f} s)")
    reporter.say(f"ranking: {result.run_dir / 'search.json'}")
    return 0


COMMANDS = [Command("find-student", "rank a search space's candidate students for the task's teacher without "
                    "training them (DisWOT), and pick one", find_student, keys={"task": "NAME", "top": "10"},
                    required=("task",), overrides=True)]
