"""The deploy side of an exported text classifier folder (``zoo.export.text_classifier``): tokenizer (transformers)
+ onnxruntime, no torch.

    OnnxTextClassifier(DIR).predict(["what a lovely day"])      # [1, C] float32 logits
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


class OnnxTextClassifier:
    """Deploy side of a text classifier folder: tokenizer + onnxruntime (no torch): texts -> class logits."""

    def __init__(self, folder: str | Path, providers: list[str] | None = None, threads: int | None = None):
        from transformers import AutoTokenizer

        from zoo.export.runtime import make_session

        self.folder = Path(folder)
        if not is_text_classifier(self.folder) or not (self.folder / "model.onnx").is_file():
            raise ConfigError(f"'{self.folder}' is not a text classifier export (no {SPEC_FILE} or model.onnx)",
                              "pass model=<a folder written by zoo export of a text-classification run>")
        self.spec = json.loads((self.folder / SPEC_FILE).read_text(encoding="utf-8"))
        self.classes = list(self.spec["classes"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder / "tokenizer"))
        self.session = make_session(self.folder / "model.onnx", providers, threads)
        self.provider = self.session.get_providers()[0]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), C] float32 logits."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="np",
                               max_length=int(self.spec["max_length"]), return_token_type_ids=False)
        return self.session.run([OUTPUT], {name: batch[name].astype(np.int64) for name in INPUTS})[0]


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
