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


def test_evolution_stays_within_budget_finds_the_best_it_saw_and_resumes_to_the_same_answer(tmp_path):
    from omegaconf import OmegaConf

    from zoo.search.evolution import evolve
    from zoo.search.space import Space

    space = Space.from_config(OmegaConf.load("tasks/space/s1.yaml"))
    calls = []

    def score(genes):  # deeper is better, the middle stage twice as much: a known optimum under the budget
        calls.append(genes.name)
        return genes.depths[0] + 2 * genes.depths[1] + genes.depths[2]

    def allowed(genes):
        return sum(genes.depths) <= 11

    winner, scores = evolve(space, score, allowed, seed=3, population=8, sample=4, parents=2, cycles=60)
    assert allowed(winner) and all(allowed(g) for g in space.all_genes() if g.name in scores)
    assert scores[winner.name] == max(scores.values())
    assert len(calls) == len(scores)  # each candidate scored once

    state = tmp_path / "evolution.json"
    evolve(space, score, allowed, seed=3, population=8, sample=4, parents=2, cycles=25, state_path=state)
    resumed, resumed_scores = evolve(space, score, allowed, seed=3, population=8, sample=4, parents=2, cycles=60,
                                     state_path=state)  # picks up at cycle 25
    assert resumed == winner and resumed_scores == scores


TINY = ["search.seeds=[0]", "search.batch_size=16", "search.space.depths=[[1,3],[1],[1,2]]",
        "teacher.arch=resnet8.cifar", "teacher.recipe.epochs=1", "trainer.enable_progress_bar=false"]


def test_find_student_ranks_every_candidate_deterministically_and_writes_its_ranking(runs):
    import json

    from zoo.config import compose
    from zoo.search.run import find_student

    first = find_student(compose("diswot_digits", [*runs, *TINY]), say=lambda *a: None)
    again = find_student(compose("diswot_digits", [*runs, *TINY]), say=lambda *a: None, write=False)
    assert [e["name"] for e in first.summary["ranking"]] == [e["name"] for e in again.summary["ranking"]]
    assert [e["scores"] for e in first.summary["ranking"]] == [e["scores"] for e in again.summary["ranking"]]
    written = json.loads((first.run_dir / "search.json").read_text())
    assert written["candidates_scored"] == 4 and written["winner"] == first.winner
    scores = [e["scores"]["diswot"] for e in written["ranking"]]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    by_params = find_student(compose("diswot_digits", [*runs, *TINY, "search.proxy=params"]), say=lambda *a: None,
                             write=False)
    assert by_params.winner == "cifar_resnet.d3-1-2"  # the most parameters


def test_train_distils_the_searched_student_under_its_budget(runs):
    from zoo.archs import count_flops, create
    from zoo.config import compose
    from zoo.train import train

    budget = count_flops(create("cifar_resnet.d1-1-2", 10, (1, 8, 8)), (1, 8, 8)) / 1e6
    cfg = compose("diswot_digits", [*runs, *TINY, f"search.budget.mflops={budget}", "trainer.fast_dev_run=true"])
    record = train(cfg, say=lambda *a: None).record
    assert record.search["winner"] == record.student.name and record.student.name in ("cifar_resnet.d1-1-1",
                                                                                       "cifar_resnet.d1-1-2")
    assert record.search["candidates_scored"] == 2 and record.student.flops / 1e6 <= budget + 1e-9


@pytest.mark.parametrize("override, message", [
    ("search.budget.mflops=0.001", "no candidate of the space fits the budget"),
    ("search.layers.head=fc", "no module 'fc'"),
    ("search.proxy=diswat", "unknown search.proxy 'diswat'"),
    ("student.arch=cifar_resnet.d1-x-3", "cifar_resnet.d"),
])
def test_bad_search_input_fails_in_one_line(runs, override, message):
    from zoo.config import compose
    from zoo.errors import ZooError
    from zoo.train import train

    with pytest.raises(ZooError, match=message) as caught:
        train(compose("diswot_digits", [*runs, *TINY, override, "trainer.fast_dev_run=true"]), say=lambda *a: None)
    assert "\n" not in str(caught.value)


def test_the_paper_task_runs_on_a_cifar100_fixture_in_the_real_format(runs, tmp_path):
    """diswot_cifar100 as shipped (S1, ResNet-56 teacher at random init for the search), the search cut to four
    candidates and one seed, the fits to one batch, on a few dozen images written as the official pickles."""
    from tests.test_cifar_svhn import fake_cifar100
    from zoo.config import compose
    from zoo.train import train

    cfg = compose("diswot_cifar100", [*runs, *TINY, f"data.root={fake_cifar100(tmp_path)}", "data.val_size=10",
                                      "trainer=cpu", "trainer.fast_dev_run=true", "teacher.arch=resnet56.cifar"])
    record = train(cfg, say=lambda *a: None).record
    assert record.search["candidates_scored"] == 4 and record.student.name == record.search["winner"]
    assert record.teachers[0].name == "resnet56.cifar"


def test_a_searched_run_is_the_searched_arm_on_the_board():
    """Its config keeps the winner (zoo eval and export build it), yet it was composed with student.arch: null."""
    from zoo import leaderboard
    from zoo.records import ModelInfo, Record

    def record(run_id, arch, search):
        return Record(task="diswot_digits", run_id=run_id, method="kd", seed=0, student=ModelInfo(arch, 1000),
                      teachers=[ModelInfo("resnet56.cifar", 2000)], metrics={"test/acc": 0.9},
                      teacher_metrics={}, config={"method": {"name": "kd", "alpha": 0.9, "temperature": 4.0},
                                                  "student": {"arch": arch}},
                      teacher_queries={}, wall_time_s={}, data={}, search=search)

    rows, _ = leaderboard.rows_of("diswot_digits", [record("a", "cifar_resnet.d3-3-3", {}),
                                                    record("b", "cifar_resnet.d1-1-7", {"winner": "x"})])
    assert [(row.variant, row.student) for row in rows] == [("hand_picked", "cifar_resnet.d3-3-3"),
                                                            ("searched", "cifar_resnet.d1-1-7")]
