"""The deploy side of exported text folders: tokenizer (transformers) + onnxruntime, no torch.

    OnnxTextClassifier(DIR).predict(["what a lovely day"])      # [1, C] float32 logits (zoo.export.text_classifier)
    OnnxDenseEncoder(DIR).encode([...])                           # query encoders build on OnnxTextEncoder
    zoo infer model=DIR inputs=tweets.txt                         # one text per line
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoo.errors import ConfigError, DataError

INPUTS, OUTPUT, SPEC_FILE = ("input_ids", "attention_mask"), "logits", "text_classifier.json"


def is_text_classifier(folder: str | Path) -> bool:
    return (Path(folder) / SPEC_FILE).is_file()


class OnnxTextEncoder:
    """Deploy-side text encoding from an exported folder (``<kind>.json``, tokenizer, ``model.onnx``): tokenizer +
    onnxruntime, no torch needed. Subclasses (the SPLADE and dense query encoders, the text classifier) name the
    folder kind and the graph's output."""

    kind, output = "", ""

    def __init__(self, folder: str | Path, providers: list[str] | None = None, threads: int | None = None):
        from transformers import AutoTokenizer

        from zoo.export.runtime import check_export_files, make_session

        self.folder = Path(folder)
        check_export_files(self.folder)  # the files zoo export checked, or a one-line error
        self.spec = json.loads((self.folder / f"{self.kind}.json").read_text(encoding="utf-8"))
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder / "tokenizer"))
        self.session = make_session(self.folder / "model.onnx", providers, threads)

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> np.ndarray:
        """[len(texts), output size] float32."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="np",
                               max_length=int(max_length or self.spec["max_length"]), return_token_type_ids=False)
        feed = {name: batch[name].astype(np.int64) for name in INPUTS}
        return self.session.run([self.output], feed)[0]


class OnnxTextClassifier(OnnxTextEncoder):
    """Deploy side of a text classifier folder: ``encode`` (alias ``predict``) gives [len(texts), C] float32
    logits; ``classes`` names them."""

    kind, output = SPEC_FILE.removesuffix(".json"), OUTPUT

    def __init__(self, folder: str | Path, providers: list[str] | None = None, threads: int | None = None):
        if not is_text_classifier(folder) or not (Path(folder) / "model.onnx").is_file():
            raise ConfigError(f"'{folder}' is not a text classifier export (no {SPEC_FILE} or model.onnx)",
                              "pass model=<a folder written by zoo export of a text-classification run>")
        super().__init__(folder, providers, threads)
        self.classes = list(self.spec["classes"])
        self.provider = self.session.get_providers()[0]

    predict = OnnxTextEncoder.encode


def read_texts(path: str | Path) -> list[str]:
    """One text per line of a UTF-8 file (blank lines skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read texts '{path}': {str(err).splitlines()[0]}",
                        "pass a UTF-8 text file with one text per line") from err
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise DataError(f"'{path}' has no text", "pass a UTF-8 text file with one text per line")
    return texts


def predict_texts(model: str | Path, inputs: str | Path, providers: list[str] | None = None,
                  ) -> tuple[OnnxTextClassifier, np.ndarray]:
    """``zoo infer model=DIR inputs=FILE.txt``: the loaded classifier and the class probabilities of every text."""
    from zoo.export.runtime import softmax

    clf = OnnxTextClassifier(model, providers=providers)
    return clf, softmax(clf.predict(read_texts(inputs)))
