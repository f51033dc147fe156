"""The deploy-side runtime: numpy + onnxruntime only, same answers as the PyTorch student.

The main test runs OnnxClassifier in a fresh interpreter in which torch (and the
libraries built on it) cannot be imported, on the raw sklearn digits of the
run's test split, and compares with the logits PyTorch gave for the data
module's normalised inputs: this checks the runtime's imports, preprocess.json
and the ONNX model in one go.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_export import quick_digits_export, quick_digits_run
from zoo.cli import main
from zoo.data.base import fixed_split
from zoo.errors import ConfigError, DataError
from zoo.export.runtime import OnnxClassifier, pick_providers
from zoo.runs import load_run

ROOT = Path(__file__).resolve().parent.parent
# Runs before anything else in the child: importing any of these raises ImportError.
BLOCK_TORCH = """
import importlib.abc, sys
BLOCKED = ("torch", "torchvision", "lightning", "pytorch_lightning", "timm", "safetensors", "zoo.archs")
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED or name.startswith(BLOCKED):
            raise ImportError(f"{name} is blocked: the runtime must not need it")
sys.meta_path.insert(0, Blocker())
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("runtime_shared")
    return quick_digits_run(root), quick_digits_export(root)


def raw_test_digits(run_dir: Path) -> np.ndarray:
    """The run's test split as raw sklearn pixels (0..16), in the data module's order."""
    from omegaconf import OmegaConf
    from sklearn.datasets import load_digits

    data = OmegaConf.load(run_dir / "config.yaml").data
    images = load_digits().images
    _, _, test = fixed_split(len(images), (data.val_fraction, data.test_fraction), data.split_seed)
    return images[test][:, None]


def torch_test_logits(run_dir: Path) -> np.ndarray:
    loaded = load_run(run_dir)
    with torch.inference_mode():
        return torch.cat([loaded.student(b["inputs"]) for b in loaded.datamodule.eval_loader("test")]).numpy()


def test_runtime_without_torch_matches_pytorch(shared, tmp_path):
    run_dir, folder = shared
    np.save(tmp_path / "raw.npy", raw_test_digits(run_dir))
    expected = torch_test_logits(run_dir)
    script = tmp_path / "deploy.py"
    script.write_text(BLOCK_TORCH + textwrap.dedent(f"""
        import numpy as np
        from zoo.cli import main
        from zoo.export.runtime import OnnxClassifier
        clf = OnnxClassifier({str(folder)!r})
        np.save({str(tmp_path / "logits.npy")!r}, clf.predict(np.load({str(tmp_path / "raw.npy")!r})))
        assert main(["infer", "model={folder}", "inputs={tmp_path / 'raw.npy'}"]) == 0
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not heavy, heavy
        print("provider", clf.provider)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    logits = np.load(tmp_path / "logits.npy")
    assert logits.shape == expected.shape == (449, 10)
    assert np.abs(logits - expected).max() <= 1e-4
    assert (logits.argmax(1) == expected.argmax(1)).all()
    lines = done.stdout.splitlines()
    assert lines[0] == "row\ttop1\tclass\tprob" and len(lines) == 1 + 449 + 1
    assert [int(line.split("\t")[1]) for line in lines[1:450]] == expected.argmax(1).tolist()
    assert "CPUExecutionProvider" in lines[-1]


def test_preprocess_reproduces_the_data_module_inputs(shared):
    run_dir, folder = shared
    clf = OnnxClassifier(folder)
    inputs = torch.cat([b["inputs"] for b in load_run(run_dir).datamodule.eval_loader("test")]).numpy()
    np.testing.assert_array_equal(clf.preprocess(raw_test_digits(run_dir)), inputs)


def test_single_sample_and_bad_inputs(shared, tmp_path, capsys):
    from zoo.export.runtime import predict_file

    run_dir, folder = shared
    one = raw_test_digits(run_dir)[0]
    np.save(tmp_path / "one.npy", one)
    assert main(["infer", f"model={folder}", f"inputs={tmp_path / 'one.npy'}"]) == 0
    assert capsys.readouterr().out.count("\n") == 2  # header + one row
    clf = OnnxClassifier(folder)
    with pytest.raises(DataError, match=r"expected a batch of shape \(N, 1, 8, 8\)"):
        clf.predict(np.zeros((2, 8, 8)))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot read inputs"):
        predict_file(folder, tmp_path / "objects.npy")
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"hold <U1 values, not numbers"):
        predict_file(folder, tmp_path / "words.npy")
    broken = np.stack([one, one, one]).astype(np.float32)
    broken[1, 0, 0, 0], broken[2, 0, 3, 3] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", broken)
    assert main(["infer", f"model={folder}", f"inputs={tmp_path / 'nan.npy'}"]) == 2
    assert "hold NaN or infinite values (row(s) 1, 2)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no model.onnx"):
        OnnxClassifier(tmp_path)


def test_providers_are_tried_tensorrt_then_cuda_then_cpu():
    everything = ["CPUExecutionProvider", "CUDAExecutionProvider", "AzureExecutionProvider",
                  "TensorrtExecutionProvider"]
    assert pick_providers(everything) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                          "CPUExecutionProvider"]
    assert pick_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="offers none"):
        pick_providers(["AzureExecutionProvider"])
