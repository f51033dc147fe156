"""Deploy-side inference on an exported folder, with numpy and onnxruntime only (no torch).

    clf = OnnxClassifier("runs/kd_digits/<id>/export/default")
    logits = clf.predict(raw_images)          # raw: as preprocess.json's raw_input describes
    clf.run(model_inputs)                     # inputs already normalised as the zoo's data modules yield them

The folder is what ``zoo export`` writes: model.onnx and preprocess.json. The
raw inputs are scaled by 1/pixel_max, then normalised per channel by mean and
std where the spec has them, then cast to the model's input type (fp16 for an
fp16 export). Execution providers are tried in the order TensorRT, CUDA, CPU
among those this onnxruntime build offers; on a GPU provider inputs and outputs
go through an IO binding, so onnxruntime copies each batch to the device once
and does no extra staging.

Before serving, every file that export.json lists (model.onnx, preprocess.json, ...) is checked against the
sha256 ``zoo export`` wrote there (``check_export_files``): a model.onnx with flipped bytes inside its weights
still loads and answers, with other answers, so it is refused in one line instead.

This module imports only numpy, onnxruntime and the torch-free ``zoo.errors`` and
``zoo.digests`` (a test runs it with torch made unimportable), so a deploy image
needs neither torch nor the rest of the zoo's dependencies.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from zoo.digests import check_sha256
from zoo.errors import CheckpointError, ConfigError, DataError

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
PREPROCESS_SCHEMA = 1
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def pick_providers(available: list[str] | None = None) -> list[str]:
    """The providers to try, best first: TensorRT, CUDA, CPU, among those available."""
    available = ort.get_available_providers() if available is None else available
    chosen = [p for p in PROVIDER_ORDER if p in available]
    if not chosen:
        raise ConfigError(f"onnxruntime offers none of {', '.join(PROVIDER_ORDER)} (it has {', '.join(available)})",
                          "install onnxruntime (CPU) or onnxruntime-gpu")
    return chosen


def make_session(model_path: Path, providers: list[str] | None = None,
                 threads: int | None = None) -> ort.InferenceSession:
    """An InferenceSession; ``threads`` sets the intra-op pool (inter-op is 1: the graphs here are chains)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only; which provider won is read from session.get_providers()
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=providers or pick_providers())
    except Exception as err:  # onnxruntime's errors (NoSuchFile, InvalidGraph, Fail) share no public base
        raise ConfigError(f"onnxruntime cannot load '{model_path}': {str(err).strip().splitlines()[0]}",
                          "re-export the model with zoo export") from err


def check_export_files(folder: Path) -> None:
    """Raise unless every file in export.json's ``files`` block matches its sha256 (see the module docstring). An
    export.json without that block (a text encoder exported before it was written) has nothing to check."""
    path = Path(folder) / "export.json"
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get("files") or {}
        expected = {name: entry["sha256"] for name, entry in files.items()}
    except FileNotFoundError as err:
        raise ConfigError(f"no export.json in '{folder}'", "pass model=<a folder written by zoo export>") from err
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err}), so the export cannot be verified",
                              "export the model again with zoo export") from err
    for name, sha256 in expected.items():
        check_sha256(Path(folder) / name, sha256, str(path), "nothing was run; export the model again with zoo export")


def read_preprocess(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"no preprocess.json in '{Path(path).parent}'",
                          "pass model=<a folder written by zoo export>") from err
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: unreadable ({err})") from err
    missing = [k for k in ("schema", "input", "output", "num_classes", "classes", "pixel_max", "mean", "std")
               if k not in spec]
    if missing or spec.get("schema") != PREPROCESS_SCHEMA:
        raise ConfigError(f"{path}: not a preprocess.json of schema {PREPROCESS_SCHEMA}"
                          + (f" (missing '{missing[0]}')" if missing else ""), "re-export the model with zoo export")
    return spec


class OnnxSession:
    """One ONNX model with one float input and one output: ``run(x)`` -> float32 outputs.

    Casts inputs to the model's input type (fp16 for an fp16 export), splits a
    batch for a static-batch export, and binds IO on a GPU provider.
    """

    def __init__(self, model_path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        self.session = make_session(Path(model_path), providers, threads)
        self.provider = self.session.get_providers()[0]
        model_input = self.session.get_inputs()[0]
        if model_input.type not in _DTYPES:
            raise ConfigError(f"{model_path}: model input type {model_input.type} is not float32 or float16")
        self.input_name, self.output_name = model_input.name, self.session.get_outputs()[0].name
        self.input_dtype = _DTYPES[model_input.type]
        # A static-batch export takes exactly this many rows per call; None: any number.
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None

    def run(self, inputs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(inputs, dtype=self.input_dtype)
        if self.fixed_batch is None:
            return self._run(x)
        if len(x) % self.fixed_batch:
            raise DataError(f"this export has a static batch of {self.fixed_batch}; got {len(x)} rows",
                            "export with dynamic_axes.batch: true to feed any batch size")
        return np.concatenate([self._run(x[i:i + self.fixed_batch]) for i in range(0, len(x), self.fixed_batch)])

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.provider in GPU_PROVIDERS:
            # IO binding: the input is copied to the GPU once and the output is left there until the single
            # copy back, instead of onnxruntime staging both through its own host buffers on every run().
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, x)
            binding.bind_output(self.output_name, "cuda")
            self.session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        else:
            out = self.session.run([self.output_name], {self.input_name: x})[0]
        return out.astype(np.float32, copy=False)


class OnnxClassifier:
    """An exported image classifier folder: raw batch in, float32 logits out."""

    def __init__(self, folder: str | Path, providers: list[str] | None = None, threads: int | None = None):
        self.folder = Path(folder)
        if not (self.folder / "model.onnx").is_file():
            raise ConfigError(f"no model.onnx in '{self.folder}'", "pass model=<a folder written by zoo export>")
        check_export_files(self.folder)
        self.spec = read_preprocess(self.folder / "preprocess.json")
        self.model = OnnxSession(self.folder / "model.onnx", providers, threads)
        self.provider = self.model.provider
        self.input_shape = tuple(int(d) for d in self.spec["input"]["shape"])
        self.classes = list(self.spec["classes"])
        self.pixel_max = self.spec["pixel_max"]
        channel = (1, -1) + (1,) * (len(self.input_shape) - 1)  # per-channel statistics, NCHW
        self.mean = None if self.spec["mean"] is None else np.asarray(self.spec["mean"], np.float32).reshape(channel)
        self.std = None if self.spec["std"] is None else np.asarray(self.spec["std"], np.float32).reshape(channel)

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """Raw inputs (N, *input_shape) -> the float32 inputs the model was trained on."""
        batch = np.asarray(batch)
        if batch.ndim != len(self.input_shape) + 1 or tuple(batch.shape[1:]) != self.input_shape:
            raise DataError(f"expected a batch of shape (N, {', '.join(map(str, self.input_shape))}), "
                            f"got {tuple(batch.shape)}", f"preprocess.json: {self.spec.get('raw_input', '')}")
        x = batch.astype(np.float32)
        if self.pixel_max is not None:
            x = x / np.float32(self.pixel_max)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Already-normalised inputs -> float32 logits (N, num_classes)."""
        return self.model.run(inputs)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raw inputs -> float32 logits: ``run(preprocess(batch))``."""
        return self.run(self.preprocess(batch))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def load_inputs(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """A .npy file as a batch: (N, *input_shape), or one sample (*input_shape) made a batch of one."""
    try:
        batch = np.load(path, allow_pickle=False)  # never unpickle objects from a file given on the command line
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read inputs '{path}': {str(err).splitlines()[0]}",
                        "pass a .npy file written by numpy.save") from err
    if not (np.issubdtype(batch.dtype, np.number) or batch.dtype == np.bool_):
        raise DataError(f"inputs '{path}' hold {batch.dtype} values, not numbers",
                        "pass a numeric array saved with numpy.save")
    batch = batch[None] if batch.ndim == len(input_shape) else batch
    if np.issubdtype(batch.dtype, np.floating) and batch.ndim and not np.isfinite(batch).all():
        rows = np.flatnonzero(~np.isfinite(batch.reshape(len(batch), -1)).all(axis=1))
        raise DataError(f"inputs '{path}' hold NaN or infinite values (row(s) {', '.join(map(str, rows[:5]))}"
                        f"{', ...' if len(rows) > 5 else ''})", "a model cannot classify them: fix or drop those rows")
    return batch


def predict_file(model: str | Path, inputs: str | Path, providers: list[str] | None = None,
                 ) -> tuple[OnnxClassifier, np.ndarray]:
    """``zoo infer model=DIR inputs=FILE.npy``: the loaded classifier and the class probabilities of every row."""
    clf = OnnxClassifier(model, providers=providers)
    batch = load_inputs(inputs, clf.input_shape)
    return clf, softmax(clf.predict(batch))
