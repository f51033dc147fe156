"""``zoo infer``: top-1 per row of a .npy batch with an exported image classifier, or per line of a text file with an
exported text classifier (its tokenizer read by transformers). numpy and onnxruntime only: nothing here (or in what
it imports) needs torch."""

from zoo.commands.base import Arguments, Command


def infer(arguments: Arguments, reporter) -> int:
    from zoo.export.runtime import predict_file
    from zoo.export.text_runtime import is_text_classifier, predict_texts

    predict = predict_texts if is_text_classifier(arguments.get("model")) else predict_file
    clf, probs = predict(arguments.get("model"), arguments.get("inputs"))
    reporter.note(f"# {clf.folder / 'model.onnx'} on {clf.provider}")
    reporter.data("row\ttop1\tclass\tprob")
    for row, p in enumerate(probs):
        top = int(p.argmax())
        reporter.data(f"{row}\t{top}\t{clf.classes[top]}\t{p[top]:.4f}")
    return 0


COMMANDS = [Command("infer", "top-1 per row with an exported model (numpy + onnxruntime only)", infer,
                    keys={"model": "EXPORT_DIR", "inputs": "FILE.npy | FILE.txt (texts, one per line)"},
                    required=("model", "inputs"))]
