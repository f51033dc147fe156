"""``zoo reproduce``: every arm of a task over seeds, then the table of means, gains and verdicts."""

from zoo.commands.base import Arguments, Command


def reference_cell(arm) -> str:
    """What the arm was judged against: its row on the task's board, the task's expected range, or nothing."""
    if arm.reference is not None:
        return f"{arm.reference.mean:.4f} ± {arm.reference.std:.4f}"
    return f"in [{arm.expected[0]}, {arm.expected[1]}]" if arm.expected else ""


def reproduce(arguments: Arguments, reporter) -> int:
    from zoo.reproduce import reproduce as run_arms

    arms = arguments.get("arms")
    result = run_arms(arguments.get("task"), arguments.integer("seeds", minimum=1), arguments.overrides,
                      [a for a in arms.split(",") if a] if arms else None, say=reporter.say)
    rows = [[f"teacher {teachers}", "1", f"{score:.4f}", "", "", ""] for teachers, score in result.teachers.items()]
    for arm in result.arms:
        gain = result.gain(arm)
        rows.append([arm.name, str(len(arm.values)), f"{arm.mean:.4f} ± {arm.std:.4f}",
                     "" if gain is None else f"{gain:+.4f}", reference_cell(arm), arm.verdict])
    reporter.table(f"{result.task}: {result.metric} over {result.seeds} seed(s)",
                   ["arm", "runs", f"{result.metric} mean ± std", f"gain over {result.baseline}", "reference",
                    "verdict"], rows)
    tolerance = "none stated" if result.tolerance is None else f"{result.tolerance}"
    reporter.say(f"reference: the arm's row on leaderboards/{result.task}.md (mean ± std), else the task's "
                 f"reproduce.expected range. Verdict: OK within the row's spread, OKish within reproduce.tolerance "
                 f"({tolerance}), FAIL beyond")
    reporter.say(f"summary: {result.summary}")
    return 0 if result.all_ok else 1


COMMANDS = [Command("reproduce", "run a task's arms over seeds: mean ± std, gain over the baseline arm, and a "
                    "verdict against the task's leaderboard (OK / OKish / FAIL)",
                    reproduce, keys={"task": "NAME", "seeds": "N", "arms": "a,b"}, required=("task",),
                    overrides=True)]
