"""``zoo infer``: top-1 per row of a .npy batch with an exported folder. numpy and onnxruntime only: nothing here
(or in what it imports) needs torch."""

from zoo.commands.base import Arguments, Command


def infer(arguments: Arguments, reporter) -> int:
    from zoo.export.runtime import predict_file

    clf, probs = predict_file(arguments.get("model"), arguments.get("inputs"))
    reporter.note(f"# {clf.folder / 'model.onnx'} on {clf.provider}")
    reporter.data("row\ttop1\tclass\tprob")
    for row, p in enumerate(probs):
        top = int(p.argmax())
        reporter.data(f"{row}\t{top}\t{clf.classes[top]}\t{p[top]:.4f}")
    return 0


COMMANDS = [Command("infer", "top-1 per row with an exported model (numpy + onnxruntime only)", infer,
                    keys={"model": "EXPORT_DIR", "inputs": "FILE.npy"}, required=("model", "inputs"))]
