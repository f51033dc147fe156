"""``zoo publish``: a finished run as a download mirror (card with sha256 and size, weights, record)."""

from pathlib import Path

from zoo.commands.base import Arguments, Command


def publish(arguments: Arguments, reporter) -> int:
    from zoo.publish import publish as publish_run

    card_path = publish_run(Path(arguments.get("run")), Path(arguments.get("to")), arguments.get("base_url"))
    reporter.say(f"published {card_path.stem}: card {card_path}, weights and record in {card_path.with_suffix('')}")
    return 0


COMMANDS = [Command("publish", "publish a run for `zoo download`: weights + card (sha256, size) + record", publish,
                    keys={"run": "RUN_DIR", "to": "DIR", "base_url": "URL"}, required=("run", "to"))]
