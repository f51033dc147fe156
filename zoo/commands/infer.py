"""``zoo infer``: top-1 per row of a .npy batch with an exported image classifier, or per line of a text file with an
exported text classifier (its tokenizer read by transformers), or the greedy answer to each record of a LLaVA JSON
file with an exported vision-language student. numpy and onnxruntime only: nothing here (or in what it imports)
needs torch."""

from pathlib import Path

from zoo.commands.base import Arguments, Command


def infer(arguments: Arguments, reporter) -> int:
    from zoo.export.runtime import predict_file
    from zoo.export.text_runtime import is_text_classifier, predict_texts
    from zoo.export.vlm_runtime import is_vlm_export

    model = export_folder(arguments.get("model"))
    if is_vlm_export(model):
        return answer(model, arguments.get("inputs"), reporter)
    predict = predict_texts if is_text_classifier(model) else predict_file
    clf, probs = predict(model, arguments.get("inputs"))
    reporter.note(f"# {clf.folder / 'model.onnx'} on {clf.provider}")
    reporter.data("row\ttop1\tclass\tprob")
    for row, p in enumerate(probs):
        top = int(p.argmax())
        reporter.data(f"{row}\t{top}\t{clf.classes[top]}\t{p[top]:.4f}")
    return 0


def answer(model: str, inputs: str, reporter) -> int:
    from zoo.export.vlm_runtime import answer_file

    vlm, answers = answer_file(model, inputs)
    reporter.note(f"# {vlm.folder} on {vlm.provider}")
    reporter.data("id\tanswer")
    for record_id, text in answers:
        reporter.data(f"{record_id}\t{text}")
    return 0


def export_folder(model: str) -> str:
    """``model=`` as given when it is a folder; else a model name that ``zoo export model=NAME`` exported to its
    default folder."""
    from zoo.catalog import export_dir
    from zoo.errors import ConfigError

    if Path(model).exists():
        return model
    exported = export_dir(model)
    if exported.is_dir():
        return str(exported)
    if "/" in model and not model.startswith("hf-hub:"):
        return model  # a folder that is not there: the runtime says so, as it always has
    raise ConfigError(f"'{model}' is neither an export folder nor a model exported by name",
                      f"export it first: zoo export model={model}")


COMMANDS = [Command("infer", "top-1 per row with an exported model (numpy + onnxruntime only)", infer,
                    keys={"model": "EXPORT_DIR | NAME (exported by zoo export model=NAME)",
                          "inputs": "FILE.npy | FILE.txt (texts, one per line) | FILE.json (LLaVA records: image, "
                                    "question)"},
                    required=("model", "inputs"))]
