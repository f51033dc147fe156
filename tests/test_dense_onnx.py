"""ONNX export of the dense query encoder (pooling and normalisation in the graph), checked against PyTorch."""

import json

import numpy as np
import pytest
import torch

from zoo.archs.dense import build_tiny
from zoo.atomic import WRITTEN
from zoo.export.dense_onnx import OnnxDenseEncoder, check_parity, export_dense
from zoo.export.errors import ExportCheckError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    encoder = build_tiny(max_length=48)
    return encoder, export_dense(encoder, tmp_path_factory.mktemp("onnx") / "query")


def test_folder_holds_a_checked_graph_that_pools_and_normalises(exported):
    encoder, out = exported
    assert {p.name for p in out.iterdir()} == {"model.onnx", "tokenizer", "dense.json", "export.json", WRITTEN}
    report = json.loads((out / "export.json").read_text())
    assert report["kind"] == "dense-query-encoder" and report["parity"]["max_abs_diff"] <= 1e-4
    assert report["parity"]["min_cosine"] > 0.9999
    assert {"ReduceSum", "Div"} <= set(report["graph"]["op_types"])  # the mean pooling is in the graph
    assert json.loads((out / "dense.json").read_text())["dim"] == encoder.dim == 32
    assert not list(out.parent.glob(".*partial"))


def test_onnxruntime_embeddings_match_torch_on_new_texts_and_shapes(exported):
    encoder, out = exported
    texts = ["who was the first king of france? [SEP] louis", "guitar", "the big red car on the old road"]
    got = OnnxDenseEncoder(out).encode(texts)
    with torch.no_grad():
        ref = encoder.encode(texts).numpy()
    assert got.shape == (3, 32)
    assert np.abs(got - ref).max() <= 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # unit length: inner product = cosine


def test_parity_check_fails_on_a_different_model(exported):
    _, out = exported
    with pytest.raises(ExportCheckError, match="differ"):
        check_parity(build_tiny(seed=3, max_length=48), out / "model.onnx", ["the king of england"])
