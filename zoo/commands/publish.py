"""``zoo publish``: a finished run (or the leaderboard's best run of each task) where others download it by name:
a mirror folder with its index.json, or a Hugging Face repository (``zoo.publish``)."""

from pathlib import Path

from zoo.commands.base import Arguments, Command, exactly_one
from zoo.errors import ConfigError


def publish(arguments: Arguments, reporter) -> int:
    from zoo.publish import publish as publish_run

    if exactly_one(arguments, "publish", "run", "best") == "best":
        return publish_best(arguments, reporter)
    done = publish_run(Path(arguments.get("run")), arguments.get("to"), arguments.get("base_url"),
                       arguments.get("name"))
    say_published(done, reporter)
    return 0


def say_published(done, reporter) -> None:
    replaced = f", replacing version {done.replaced}" if done.replaced and done.replaced != done.version else ""
    reporter.say(f"published {done.name} (version {done.version}{replaced}): {done.where}")
    if done.where.startswith("hf-hub:"):
        reporter.say(f"download it with: zoo download {done.where}")


def publish_best(arguments: Arguments, reporter) -> int:
    """Each leaderboard task's best run found under best=RUNS_DIR, published to one mirror folder."""
    from zoo.hfhub import is_hub_name
    from zoo.publish import best_runs, publish_to_folder

    if is_hub_name(arguments.get("to")):
        raise ConfigError("best= publishes into a mirror folder, not to the Hub", "publish one run=... to=hf-hub:...")
    published = 0
    for best in best_runs(Path(arguments.get("best"))):
        if best.run is None:
            reporter.note(f"{best.task}: skipped, {best.why}")
            continue
        reporter.note(f"{best.task}: {best.run.name}, {best.metric} {best.value:.4f}"
                      + (f" ({best.why})" if best.why else ""))
        say_published(publish_to_folder(best.run, Path(arguments.get("to")), arguments.get("base_url")), reporter)
        published += 1
    if not published:
        raise ConfigError(f"no leaderboard run of any task is under {arguments.get('best')}",
                          "pass best=<the run.root the runs were trained in> (default runs/)")
    return 0


COMMANDS = [Command("publish", "publish a run (or best=RUNS_DIR: each task's best) to a mirror folder or "
                    "hf-hub:org/repo: weights + card (sha256, size) + record + index", publish,
                    keys={"run": "RUN_DIR", "best": "RUNS_DIR", "to": "DIR | hf-hub:org/repo", "name": "ARCH.TAG",
                          "base_url": "URL"}, required=("to",))]
