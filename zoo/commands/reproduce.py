"""``zoo reproduce``: every arm of a task over seeds, then the table of means, gains and verdicts."""

from zoo.commands.base import Arguments, Command


def reproduce(arguments: Arguments, reporter) -> int:
    from zoo.reproduce import reproduce as run_arms

    arms = arguments.get("arms")
    result = run_arms(arguments.get("task"), arguments.integer("seeds", minimum=1), arguments.overrides,
                      [a for a in arms.split(",") if a] if arms else None, say=reporter.say)
    rows = [[f"teacher {teachers}", "1", f"{score:.4f}", "", "", ""] for teachers, score in result.teachers.items()]
    for arm in result.arms:
        gain = result.gain(arm)
        rows.append([arm.name, str(len(arm.values)), f"{arm.mean:.4f} ± {arm.std:.4f}",
                     "" if gain is None else f"{gain:+.4f}",
                     f"[{arm.expected[0]}, {arm.expected[1]}]" if arm.expected else "", "OK" if arm.ok else "FAIL"])
    reporter.table(f"{result.task}: {result.metric} over {result.seeds} seed(s)",
                   ["arm", "runs", f"{result.metric} mean ± std", f"gain over {result.baseline}", "expected",
                    "verdict"], rows)
    reporter.say(f"summary: {result.summary}")
    return 0 if result.all_ok else 1


COMMANDS = [Command("reproduce", "run a task's arms over seeds: mean ± std, gain over the baseline arm, OK/FAIL",
                    reproduce, keys={"task": "NAME", "seeds": "N", "arms": "a,b"}, required=("task",),
                    overrides=True)]
