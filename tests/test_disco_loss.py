"""DiSCo: KL over [positive + negatives] scores, temperature, multi-teacher fusion, in-batch term, sampling."""

import math
import random

import pytest
import torch
from omegaconf import OmegaConf

from zoo.errors import ConfigError, DataError
from zoo.methods import disco
from zoo.methods.base import MethodContext
from zoo.methods.disco import DiSCo, disco_kl, fuse_scores, inbatch_contrastive, sample_candidates


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q, strict=True))


def test_kl_over_positive_and_negatives_by_hand():
    s = [[2.0, 1.0, 0.0], [0.5, 0.5, 3.0]]
    t = [[10.0, 8.0, 7.0], [1.0, 2.0, 0.0]]
    want = (kl(softmax(t[0]), softmax(s[0])) + kl(softmax(t[1]), softmax(s[1]))) / 2
    assert disco_kl(torch.tensor(s), torch.tensor(t)).item() == pytest.approx(want, rel=1e-5)
    assert disco_kl(torch.tensor(t), torch.tensor(t)).item() == pytest.approx(0.0, abs=1e-7)


def test_temperature_divides_both_score_lists():
    s, t, tau = [2.0, 1.0, 0.0], [10.0, 8.0, 7.0], 4.0
    want = kl(softmax([x / tau for x in t]), softmax([x / tau for x in s]))  # no tau^2 factor
    got = disco_kl(torch.tensor([s]), torch.tensor([t]), temperature=tau).item()
    assert got == pytest.approx(want, rel=1e-5)


def test_gradient_flows_to_student_scores_only():
    s = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
    t = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    disco_kl(s, t).backward()
    assert s.grad is not None and t.grad is None
    # d KL / d s = softmax(s) - softmax(t)
    assert torch.allclose(s.grad, torch.softmax(s.detach(), -1) - torch.softmax(t.detach(), -1), atol=1e-6)


def test_multi_teacher_fusion_rules():
    scores = torch.tensor([[[10.0, 4.0, 1.0], [6.0, math.nan, 3.0]]])  # [B=1, K=2, C=3]; teacher 2 lacks doc 1
    assert torch.allclose(fuse_scores(scores, "mean"), torch.tensor([[8.0, 4.0, 2.0]]))
    assert torch.allclose(fuse_scores(scores, "sum"), torch.tensor([[16.0, 4.0, 4.0]]))
    assert torch.allclose(fuse_scores(scores, "max"), torch.tensor([[10.0, 4.0, 3.0]]))
    s = torch.tensor([[1.0, 0.0, 0.0]])
    assert disco_kl(s, scores, fusion="mean").item() == pytest.approx(kl(softmax([8, 4, 2]), softmax([1, 0, 0])))
    full = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]]])
    p = [(a + b) / 2 for a, b in zip(softmax([3, 1, 0]), softmax([0, 2, 1]), strict=True)]
    assert disco_kl(s, full, fusion="mean_probs").item() == pytest.approx(kl(p, softmax([1, 0, 0])), rel=1e-5)
    with pytest.raises(ConfigError):
        fuse_scores(scores, "median")


def test_inbatch_contrastive_uses_every_negative_of_the_batch_but_no_other_positive():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    docs = torch.tensor([[[2.0, 0.0], [1.0, 1.0]],     # query 0: positive, negative
                         [[0.0, 3.0], [0.0, 1.0]]])    # query 1: positive, negative
    # query 0: pos 2, negatives <q0, n0> = 1, <q0, n1> = 0; query 1: pos 3, negatives 1, 1
    want = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(0)))
            - math.log(math.exp(3) / (math.exp(3) + math.exp(1) + math.exp(1)))) / 2
    assert inbatch_contrastive(q, docs).item() == pytest.approx(want, rel=1e-5)


def test_sample_candidates_follows_the_official_sampler():
    run = {f"d{i}": 100.0 - i for i in range(30)}  # d0 best
    pos, negs, targets = sample_candidates(run, {"d12": 1, "d3": 0}, n_negatives=4, rank_window=(10, 20),
                                           rng=random.Random(0))
    assert pos == "d12" and len(set(negs)) == 4
    assert all(10 <= int(d[1:]) < 20 and d != "d12" for d in negs)
    assert targets == [run["d12"], *(run[d] for d in negs)]
    # a positive outside the kept window gets the max kept score
    pos, negs, targets = sample_candidates(run, {"d1": 1}, n_negatives=2, rank_window=(10, 20), rng=random.Random(0))
    assert targets[0] == run["d10"]
    # fewer candidates than negatives: drawn with replacement
    _, negs, _ = sample_candidates(run, {"d1": 1}, n_negatives=8, rank_window=(10, 13), rng=random.Random(0))
    assert len(negs) == 8 and set(negs) <= {"d10", "d11", "d12"}
    with pytest.raises(DataError):
        sample_candidates(run, {"d1": 0})


def test_regulariser_warmup_is_quadratic():
    assert disco.reg_factor(0, 0) == 0.0 and disco.reg_factor(1, 0) == 1.0
    assert disco.reg_factor(5, 9) == pytest.approx(0.25) and disco.reg_factor(50, 9) == 1.0


@pytest.fixture(scope="module")
def tiny_pair():
    from zoo.archs.splade import build_tiny, frozen_copy

    student = build_tiny(max_length=32)
    return student, frozen_copy(student)


def make(student, teachers, **cfg):
    import copy

    method = OmegaConf.create({"name": "disco", "max_length_doc": 32, "max_length_query": 32, **cfg})
    optim = OmegaConf.create({"name": "adamw", "lr": 1e-3, "weight_decay": 0.0})
    return DiSCo(copy.deepcopy(student), teachers, MethodContext(kind="retrieval", method=method, optim=optim))


BATCH = {"conversation": ["what about its queen? [SEP] the king of england", "who plays guitar [SEP] the band"],
         "docs": [["king queen england", "river", "car engine"], ["band guitar music", "paris city", "apple"]]}


def test_module_losses_online_teacher_and_precomputed_scores_agree(tiny_pair):
    student, teacher = tiny_pair
    module = make(student, [teacher])
    assert module.student.training and not module.doc_encoder.training
    module.student.eval()  # no dropout: the two calls must see the same student
    rewrites = ["who is the queen of england", "who plays guitar in the band"]
    online = module.losses({**BATCH, "rewrites": rewrites})
    doc_reps = module.encode_docs(BATCH["docs"])
    t = torch.einsum("bv,bcv->bc", teacher.encode(rewrites, 32), doc_reps)
    given = module.losses({**BATCH, "teacher_scores": t})
    assert set(online) == {"kd", "ce", "anti_zero"}
    assert online["kd"].item() == pytest.approx(given["kd"].item(), rel=1e-5)
    assert module.teacher_calls["forward_passes"] == 1


def test_module_multi_teacher_rewrites_are_fused(tiny_pair):
    student, teacher = tiny_pair
    rewrites = [["the queen of england", "queen"], ["band guitar", "guitar player"]]  # B x K
    mean = make(student, [teacher], fusion="mean", w_ce=0.0).losses({**BATCH, "rewrites": rewrites})
    summed = make(student, [teacher], fusion="sum", w_ce=0.0).losses({**BATCH, "rewrites": rewrites})
    assert "ce" not in mean and mean["kd"].item() != pytest.approx(summed["kd"].item())
    with pytest.raises(ConfigError, match="rewrite sources"):
        make(student, [teacher, teacher, teacher]).losses({**BATCH, "rewrites": rewrites})


def test_module_rejects_bad_switches_and_ragged_candidates(tiny_pair):
    student, teacher = tiny_pair
    with pytest.raises(ConfigError):
        make(student, [teacher], fusion="median")
    with pytest.raises(ConfigError):
        make(student, [teacher], doc_encoder="bm25")
    ragged = {**BATCH, "docs": [["a", "b", "c"], ["a", "b"]], "rewrites": ["x", "y"]}
    with pytest.raises(DataError, match="same number of candidates"):
        make(student, [teacher]).losses(ragged)


def test_query_regularisers_are_weighted_with_warmup(tiny_pair):
    student, teacher = tiny_pair
    module = make(student, [teacher], flops_q=0.5, l1_q=0.1, reg_warmup_steps=0)
    losses = module.losses({**BATCH, "rewrites": ["queen", "guitar"]})
    assert {"flops_q", "l1_q"} <= set(losses)
    weights = module.loss_weights()  # global_step 0 without a trainer: λ_0 = 0
    assert weights["flops_q"] == 0.0 and weights["kd"] == pytest.approx(0.99) and weights["ce"] == pytest.approx(0.01)


def test_lightning_fast_dev_run_trains_the_student_only(tiny_pair, tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader

    student, teacher = tiny_pair
    module = make(student, [teacher])
    module.optim_cfg = OmegaConf.create({"name": "adamw", "lr": 1e-2, "weight_decay": 0.0})
    before = {k: v.clone() for k, v in module.student.state_dict().items()}
    doc_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    batches = [{**BATCH, "rewrites": ["the queen of england", "band guitar"]}] * 2
    loader = DataLoader(batches, batch_size=None, collate_fn=lambda b: b)  # batches are ready-made dicts
    trainer = L.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, log_every_n_steps=1)
    trainer.fit(module, loader, loader)
    after = module.student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(doc_before[k], v) for k, v in teacher.state_dict().items())
    assert "val/candidate_mrr" in trainer.callback_metrics and "val/kd" in trainer.callback_metrics


def test_splade_ce_gets_the_same_query_regularisers_as_disco(tiny_pair):
    import copy

    from zoo.methods.splade_ce import SpladeCE

    student, teacher = tiny_pair
    method = OmegaConf.create({"name": "splade_ce", "max_length_doc": 32, "max_length_query": 32, "flops_q": 0.5,
                               "l1_q": 0.1})
    optim = OmegaConf.create({"name": "adamw", "lr": 1e-3})
    module = SpladeCE(copy.deepcopy(student), [teacher], MethodContext(kind="retrieval", method=method, optim=optim))
    losses = module.losses(BATCH)
    assert set(losses) == {"ce", "flops_q", "l1_q", "anti_zero"}  # no KL: no distillation
