"""``zoo export``: a run's student, or a published model card's checkpoint, as a checked ONNX folder."""

from zoo.commands.base import Arguments, Command, exactly_one


def export(arguments: Arguments, reporter) -> int:
    source = exactly_one(arguments, "export", "run", "model")
    if source == "run":
        from zoo.export.dispatch import export_run

        export_run(arguments.get("run"), arguments.get("out"), arguments.get("profile"), say=reporter.say)
    else:
        from zoo.export.classifier import export_card

        export_card(arguments.get("model"), arguments.get("out"), arguments.get("profile", "default"),
                    say=reporter.say)
    return 0


COMMANDS = [Command("export", "export a student to ONNX, checked against PyTorch on the test split (profile: the "
                    "kind's own by default)", export,
                    keys={"run": "RUN_DIR", "model": "CARD", "profile": "NAME", "out": "DIR"})]
