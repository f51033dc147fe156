"""ONNX export of the SPLADE query encoder, sparse head inside the graph, checked against PyTorch."""

import json

import numpy as np
import pytest
import torch

from zoo.archs.splade import build_tiny
from zoo.atomic import WRITTEN
from zoo.export.errors import ExportCheckError
from zoo.export.splade_onnx import OnnxSpladeEncoder, check_parity, export_splade


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    encoder = build_tiny(max_length=48)
    out = export_splade(encoder, tmp_path_factory.mktemp("onnx") / "query", top_k=10)
    return encoder, out


def test_folder_holds_a_checked_graph_with_the_sparse_head(exported):
    _, out = exported
    assert {p.name for p in out.iterdir()} == {"model.onnx", "tokenizer", "splade.json", "export.json", WRITTEN}
    report = json.loads((out / "export.json").read_text())
    assert report["parity"]["max_abs_diff"] <= 1e-4 and report["parity"]["topk_mismatches"] == 0
    ops = set(report["graph"]["op_types"])
    assert {"Relu", "ReduceMax"} <= ops and ({"Log1p", "Log"} & ops or "Softplus" in ops)
    assert not list(out.parent.glob(".*partial"))


def test_onnxruntime_weights_match_torch_on_new_texts_and_shapes(exported):
    encoder, out = exported
    onnx_encoder = OnnxSpladeEncoder(out)
    texts = ["who was the first king of france? [SEP] louis", "guitar", "the big red car on the old road"]
    got = onnx_encoder.encode(texts)
    with torch.no_grad():
        ref = encoder.encode(texts).numpy()
    assert got.shape == (3, encoder.vocab_size)
    assert np.abs(got - ref).max() <= 1e-4
    for g, r in zip(got, ref, strict=True):
        assert set(np.argsort(-g)[:10]) == set(np.argsort(-r)[:10])
    quantised = onnx_encoder.term_weights(texts[:1], quant_scale=100)[0]
    from zoo.retrieval.impact import encode_queries

    assert quantised == encode_queries(encoder, texts[:1], quant_scale=100)["0"]


def test_parity_check_fails_on_a_different_model(exported):
    _, out = exported
    with pytest.raises(ExportCheckError, match="differ"):
        check_parity(build_tiny(seed=3, max_length=48), out / "model.onnx", ["the king of england"])
