"""dense_ce, the dense baseline beside DiSCo: the loss by hand, the frozen document copy, the config guards."""

import copy
import math

import pytest
import torch
from omegaconf import OmegaConf

from zoo.errors import ConfigError
from zoo.methods.base import MethodContext
from zoo.methods.dense_ce import DenseCE


@pytest.fixture(scope="module")
def tiny_dense():
    """A random 2-layer BERT (hidden 32) over the tiny SPLADE vocabulary, mean-pooled and normalised."""
    from zoo.archs.dense import build_tiny as build_tiny_dense
    from zoo.archs.splade import build_tiny

    return build_tiny_dense(seed=0), build_tiny(max_length=32)


def make(student, teachers, **cfg):
    method = OmegaConf.create({"name": "dense_ce", "doc_encoder": "student_copy", "max_length_doc": 32,
                               "max_length_query": 32, **cfg})
    optim = OmegaConf.create({"name": "adamw", "lr": 1e-3})
    return DenseCE(copy.deepcopy(student), teachers, MethodContext(kind="retrieval", method=method, optim=optim))


BATCH = {"conversation": ["what about its queen? [SEP] the king of england", "who plays guitar [SEP] the band"],
         "docs": [["king queen england", "river", "car engine"], ["band guitar music", "paris city", "apple"]]}


def test_loss_is_inbatch_ce_on_scaled_cosines_by_hand(tiny_dense):
    dense, splade_teacher = tiny_dense
    module = make(dense, [splade_teacher], scale=20.0)
    module.student.eval()
    losses = module.losses(BATCH)
    assert set(losses) == {"ce"}  # no teacher score, no SPLADE regulariser
    q = module.student.encode(BATCH["conversation"], 32).detach()
    d = [[module.doc_encoder.encode([t], 32)[0].detach() for t in row] for row in BATCH["docs"]]
    negatives = [d[b][i] for b in range(2) for i in (1, 2)]  # every negative of the batch, no other positive
    expected = 0.0
    for b in range(2):
        logits = [20.0 * float(q[b] @ d[b][0])] + [20.0 * float(q[b] @ n) for n in negatives]
        expected += -logits[0] + math.log(sum(math.exp(x) for x in logits))
    assert losses["ce"].item() == pytest.approx(expected / 2, rel=1e-4)
    assert float(q[0].norm()) == pytest.approx(1.0, rel=1e-5)  # cosines: the reason for the scale


def test_documents_use_a_frozen_copy_of_the_starting_student(tiny_dense):
    dense, splade_teacher = tiny_dense
    module = make(dense, [splade_teacher])
    assert module.doc_encoder is not module.student and not module.doc_encoder.training
    assert all(not p.requires_grad for p in module.doc_encoder.parameters())
    module.losses(BATCH)["ce"].backward()
    assert any(p.grad is not None for p in module.student.parameters())
    start = module.doc_encoder.encode(["river"], 32)
    assert torch.allclose(start, dense.encode(["river"], 32), atol=1e-6)  # D = the student as it started


def test_config_guards(tiny_dense):
    dense, splade_teacher = tiny_dense
    with pytest.raises(ConfigError, match="frozen copy"):
        make(dense, [splade_teacher], doc_encoder="teacher")
    with pytest.raises(ConfigError, match="SPLADE teacher"):
        make(dense, [splade_teacher], init_from_teacher=True)
    with pytest.raises(ConfigError, match="dense encoder"):
        make(splade_teacher, [splade_teacher])
