"""DisWOT (zoo.search): the training-free proxies against hand-computed values, the space, the budget, evolution,
and search runs on the digits task."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.search.proxies import Layers, head_gradient, nwot, relation_distance, semantic_distance, synflow


def test_relation_distance_on_a_hand_computed_three_sample_example():
    # Teacher features: e1, e2, e1 -> F F^T = [[1,0,1],[0,1,0],[1,0,1]]; rows normalised: r1 = r3 = (1,0,1)/sqrt2,
    # r2 = (0,1,0). Student features: all (1, 0) -> F F^T all ones; rows (1,1,1)/sqrt3.
    # Row 1 (and 3): (1/sqrt2 - 1/sqrt3)^2 * 2 + (1/sqrt3)^2; row 2: (1/sqrt3)^2 * 2 + (1 - 1/sqrt3)^2.
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    a, b = 1 / math.sqrt(2), 1 / math.sqrt(3)
    row_1 = 2 * (a - b) ** 2 + b ** 2
    row_2 = 2 * b ** 2 + (1 - b) ** 2
    assert relation_distance(teacher, student) == pytest.approx((2 * row_1 + row_2) / 9, abs=1e-6)
    assert relation_distance(teacher, teacher) == pytest.approx(0.0, abs=1e-9)


def test_semantic_distance_per_class_maps_and_the_unequal_width_reading():
    # K = 2 classes, C = 2 channels. Teacher g_1 = (1, 0): E_1 = [[1,0],[0,0]] -> rows (1,0), (0,0);
    # g_2 = (0, 1): E_2 rows (0,0), (0,1). Student g_1 = (0, 1), g_2 = (1, 0): the classes swapped, so each class map
    # differs in two unit entries: sum over both classes = 4, / (C K) = 1.
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    student = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert semantic_distance(teacher, student) == pytest.approx(1.0)
    assert semantic_distance(teacher, teacher) == pytest.approx(0.0)
    # Another width: K x K relations G G^T (rows normalised); both identity-like here, so the distance is 0.
    wide = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    assert semantic_distance(teacher, wide) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ConfigError, match="read 2 and 3 channels"):
        semantic_distance(teacher, wide, unequal_width="error")


def test_synflow_of_a_linear_chain_by_hand():
    # x = ones(2); h = |W1| x; y = |W2| h; R = sum y. dR/dW2_j = h_j, dR/dW1_ij = |W2_i|; score = sum |W| * grad.
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
        net[1].weight.copy_(torch.tensor([[-1.0, 2.0]]))
    h = torch.tensor([3.0, 3.5])
    expected = float((torch.tensor([1.0, 2.0]) * h).sum() + (torch.tensor([[1.0, 2.0], [0.5, 3.0]])
                                                              * torch.tensor([[1.0], [2.0]])).sum())
    assert synflow(net, (2,)) == pytest.approx(expected)
    assert net[0].weight[0, 1].item() == -2.0  # the model itself is untouched


def test_nwot_counts_agreeing_relu_codes():
    # One ReLU over identity features: codes of x1 = (1, 0), x2 = (1, 0), x3 = (0, 1) after ReLU(x - 0.5).
    # K_ij = number of units where i and j agree: [[2,2,0],[2,2,0],[0,0,2]] is singular -> -inf; make x2 differ.
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(x - 0.5)

    inputs = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # codes (1,0), (1,1), (0,1)
    kernel = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    assert nwot(Net(), inputs) == pytest.approx(math.log(torch.linalg.det(kernel).item()))
    assert nwot(Net(), torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])) == -math.inf


def test_head_gradient_reads_the_classifier_and_the_pre_pool_map_and_says_what_is_missing():
    net = nn.Sequential()
    net.add_module("body", nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()))
    net.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    net.add_module("head", nn.Linear(4, 3))
    x, y = torch.randn(5, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1])
    gradient, features = head_gradient(net, x, y, Layers(), "student")
    assert gradient.shape == (3, 4) and features.shape == (5, 4 * 36)
    assert all(p.grad is None for p in net.parameters())  # nothing left behind
    with pytest.raises(ConfigError, match="the teacher has no module 'classifier'"):
        head_gradient(net, x, y, Layers(head="classifier"), "teacher")
    with pytest.raises(ConfigError, match="not the linear classifier"):
        head_gradient(net, x, y, Layers(head="pool"), "teacher")


def test_space_enumerates_names_mutates_within_choices_and_the_budget_can_be_empty():
    from omegaconf import OmegaConf

    from zoo.search.space import Candidate, Genes, Space, within_budget

    space = Space.from_config(OmegaConf.create({"name": "t", "family": "cifar_resnet", "depths": [[1, 3], [1], [1, 7]],
                                                "widths": [[16], [32, 8], [64]]}))
    genes = space.all_genes()
    assert len(genes) == 8 and Genes((1, 1, 7), (16, 32, 64)).name == "cifar_resnet.d1-1-7"
    assert Genes((1, 1, 1), (16, 8, 64)).name == "cifar_resnet.d1-1-1.w16-8-64"
    rng = np.random.default_rng(0)
    for _ in range(20):
        child = space.mutate(genes[0], rng)
        changed = sum(a != b for a, b in zip(child.depths + child.widths, genes[0].depths + genes[0].widths,
                                             strict=True))
        assert changed == 1 and child in genes
    small = Candidate(genes[0], 1000, 2_000_000)
    assert within_budget([small], mflops=2.0, params=None) == [small]
    with pytest.raises(ConfigError, match="no candidate of the space fits the budget"):
        within_budget([small], mflops=1.0, params=None)
