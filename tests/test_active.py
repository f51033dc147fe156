"""Active distillation (zoo.active, zoo.selectors, active_kd): RAD's game and sampler, the selectors, and whole runs
of rad_fashion_mnist at a tiny size: teacher queries counted, sets kept apart, resume, bad input."""

import hashlib
import json

import numpy as np
import pytest
import torch

from tests.helpers import has_fashion_mnist
from zoo.active import Teacher
from zoo.errors import CheckpointError, ConfigError, ZooError
from zoo.selectors.game import depround, solve_game

needs_fmnist = pytest.mark.skipif(not has_fashion_mnist(), reason="apt-get install dataset-fashion-mnist")
# rad_fashion_mnist at a few hundred images: the teacher sees 300, the student 50 labelled and 2 x 40 queried.
TINY = ["data.val_size=500", "data.train_slice=[300,null]", "teacher.recipe.data.train_slice=[0,300]",
        "teacher.recipe.epochs=1", "active.labelled=50", "active.pool=400", "active.validation=100", "active.rounds=2",
        "active.budget=40", "active.initial_epochs=1", "active.epochs=2", "trainer.enable_progress_bar=false"]


def worst_case_value(p: torch.Tensor, gains: torch.Tensor, m: int) -> float:
    """sum p g minus the adversary's best m of the p g: what RAD maximises."""
    worth = (p * gains.double()).sort(descending=True).values
    return float(worth.sum() - worth[:m].sum())


def test_game_matches_a_hand_solved_example():
    # g = (1, .8, .5, .4, .1), b = 2, m = 1. Support k: v = b / sum_{j<=k} 1/g_j must stay <= g_k.
    # k=2: v = 2/2.25 = .889 > .8, infeasible; k=3: v = 2/4.25 = 8/17 <= .5, worth (3-1) 8/17 = 16/17;
    # k=4: v = 2/6.75 = .296, worth 3 x .296 = .889 < 16/17. So p = (8/17)/g on the top three.
    gains = torch.tensor([0.5, 1.0, 0.1, 0.8, 0.4])  # shuffled: p comes back in this order
    p = solve_game(gains, budget=2, mistakes=1)
    expected = torch.tensor([16 / 17, 8 / 17, 0.0, 10 / 17, 0.0], dtype=torch.float64)
    assert torch.allclose(p, expected, atol=1e-6)
    assert worst_case_value(p, gains, 1) == pytest.approx(16 / 17, abs=1e-6)


def test_game_without_mistakes_is_top_b_sampling():
    gains = torch.tensor([0.3, 0.9, 0.1, 0.7])
    assert torch.allclose(solve_game(gains, 2, 0), torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64),
                          atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_game_reaches_the_linear_programs_optimum(seed):
    """The max-min game as an LP (variables p, t, s): max sum p g - m t - sum s, s >= p g - t, s >= 0,
    sum p = b, 0 <= p <= 1; solved by scipy, compared with solve_game, caps at 1 included (steep gains)."""
    from scipy.optimize import linprog

    gen = torch.Generator().manual_seed(seed)
    n = 12
    gains = (torch.rand(n, generator=gen) ** 3 + 0.01).double()  # steep: some p must be capped at 1
    budget, m = 1 + seed % 4, seed % 5
    g = gains.numpy()
    cost = np.concatenate([-g, [m], np.ones(n)])  # minimise -(objective)
    a_ub = np.hstack([np.diag(g), -np.ones((n, 1)), -np.eye(n)])  # p g - t - s <= 0
    a_eq = np.concatenate([np.ones(n), [0.0], np.zeros(n)])[None]
    bounds = [(0, 1)] * n + [(None, None)] + [(0, None)] * n
    best = -linprog(cost, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq, b_eq=[budget], bounds=bounds).fun
    p = solve_game(gains, budget, m)
    assert float(p.sum()) == pytest.approx(budget, abs=1e-6) and float(p.min()) >= 0 and float(p.max()) <= 1 + 1e-9
    assert worst_case_value(p, gains, m) == pytest.approx(best, abs=1e-6)


def test_depround_keeps_exactly_b_and_the_marginals():
    p = solve_game(torch.tensor([1.0, 0.8, 0.5, 0.4, 0.1, 0.9, 0.7]), budget=3, mistakes=2)
    gen = torch.Generator().manual_seed(0)
    draws = 4000
    counts = torch.zeros(len(p), dtype=torch.float64)
    for _ in range(draws):
        chosen = depround(p, gen)
        assert len(chosen) == 3 and len(set(chosen.tolist())) == 3
        counts[chosen] += 1
    spread = torch.sqrt(p * (1 - p) / draws)
    assert torch.all((counts / draws - p).abs() <= 4 * spread + 1e-9), (counts / draws, p)


def test_selectors_choose_what_they_say():
    from omegaconf import OmegaConf

    from zoo.registry import SELECTORS

    assert {"uniform", "margin", "entropy", "rad", "oracle"} <= set(SELECTORS.names())
    settings = OmegaConf.create({"gain": "margin"})
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.45, 0.05], [0.34, 0.33, 0.33], [0.7, 0.3, 0.0]])
    gen = torch.Generator().manual_seed(0)
    assert sorted(SELECTORS.get("margin")(settings).choose(probs, 2, 0, gen).tolist()) == [1, 2]
    assert SELECTORS.get("entropy")(settings).choose(probs, 1, 0, gen).tolist() == [2]
    assert len(set(SELECTORS.get("uniform")(settings).choose(probs, 3, 0, gen).tolist())) == 3
    assert len(SELECTORS.get("rad")(settings).choose(probs, 2, 1, gen)) == 2
    oracle = SELECTORS.get("oracle")(settings)
    answers = torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.9, 0.0]])
    assert oracle.keep(answers, torch.tensor([0, 0])).tolist() == [True, False]


def test_mistakes_follow_the_validation_error():
    from zoo.active import mistakes_for

    active = {"mistakes": "pool", "budget": 100, "fixed_mistakes": None}
    assert mistakes_for(active, 0.2, 1000) == 200
    assert mistakes_for({**active, "mistakes": "budget"}, 0.2, 1000) == 20
    assert mistakes_for({**active, "fixed_mistakes": 7}, 0.2, 1000) == 7
    with pytest.raises(ConfigError, match="m=1000"):
        mistakes_for({**active, "fixed_mistakes": 1000}, 0.2, 1000)


def active_cfg(runs, *extra):
    from zoo.config import compose

    return compose("rad_fashion_mnist", [*runs, *TINY, *extra])


class CountingTeacher:
    """zoo.active.Teacher with a count of every sample that reaches the teacher model's forward."""

    seen: list[int] = []

    def __new__(cls, model, *args):
        handle = model.register_forward_hook(lambda module, inputs, output: cls.seen.append(len(inputs[0])))
        teacher = Teacher(model, *args)
        teacher.hook = handle
        return teacher


@needs_fmnist
def test_a_run_queries_the_teacher_on_picked_points_only(runs, monkeypatch):
    from zoo.active import draw_sets
    from zoo.train import train

    CountingTeacher.seen = []
    monkeypatch.setattr("zoo.active.Teacher", CountingTeacher)
    cfg = active_cfg(runs, "active.selector=rad")
    result = train(cfg, say=lambda *a: None)
    assert sum(CountingTeacher.seen) == 100 + 2 * 40  # Vd once, then b per round: never the pool
    record = result.record
    assert record.teacher_queries == {"queries": 80, "validation": 100, "samples": 180}
    assert [r["round"] for r in record.rounds] == [0, 1, 2]
    assert [r["queries_total"] for r in record.rounds] == [0, 40, 80]
    assert all(0.0 <= r["teacher_wrong"] <= 1.0 for r in record.rounds[1:])
    error = record.rounds[0]["teacher_val_error"]  # m follows the teacher's error on Vd and the pool's size
    assert [r["mistakes_m"] for r in record.rounds[1:]] == [round(error * 400), round(error * 360)]
    assert record.rounds[-1]["metrics"]["test/acc"] == pytest.approx(record.metrics["test/acc"], abs=1e-6)

    from zoo.registry import DATASETS

    data = DATASETS.get("fashion_mnist")(cfg.data, shuffle_seed=0)
    sets = draw_sets(dict(cfg.active), data, 0)
    assert set(sets.labelled).isdisjoint(sets.pool)
    assert sets.validation.max() < len(data.splits["val"])  # Vd indexes the val split: never L, U or D
    from safetensors.torch import load_file

    picked = np.concatenate([load_file(result.run_dir / "rounds" / str(r) / "queries.safetensors")["picked"].numpy()
                             for r in (1, 2)])
    assert len(set(picked)) == 80 and set(picked) <= set(sets.pool)
    first = np.sort(picked[:40]).astype("<i8").tobytes()  # the record names each round's selection
    assert record.rounds[1]["picked_sha256"] == hashlib.sha256(first).hexdigest()
    assert sum(record.rounds[1]["picked_classes"]) == 40 and len(record.rounds[1]["picked_classes"]) == 10


@needs_fmnist
def test_the_oracle_keeps_only_right_answers(runs):
    from zoo.train import train

    record = train(active_cfg(runs, "active.selector=oracle"), say=lambda *a: None).record
    for r in record.rounds[1:]:
        assert r["kept"] == round(r["queries"] * (1 - r["teacher_wrong"]))
    assert record.rounds[-1]["distilled"] == sum(r["kept"] for r in record.rounds[1:])


class StopInRound:
    """Interrupts the fit of round ``round`` at its first batch, as Ctrl-C would."""

    def __new__(cls, round_number: int):
        import lightning as L

        class Stop(L.Callback):
            fits = 0

            def on_train_start(self, trainer, module):
                Stop.fits += 1

            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if Stop.fits == round_number + 1 and trainer.current_epoch == 1:
                    raise KeyboardInterrupt

        return Stop()


@needs_fmnist
def test_a_killed_run_resumes_at_its_last_round_to_the_same_student(runs):
    from zoo.train import train

    whole = train(active_cfg(runs, "active.selector=margin"), say=lambda *a: None)
    cfg = active_cfg(runs, "active.selector=margin", "run.id=killed")
    with pytest.raises(ZooError, match="interrupted in round 2"):
        train(cfg, say=lambda *a: None, callbacks=[StopInRound(2)])
    folder = whole.run_dir.parent / "killed" / "rounds"
    assert (folder / "1" / "done.json").is_file() and not (folder / "2" / "done.json").exists()
    said = []
    resumed = train(cfg, say=said.append)
    assert any("round 1/2: done earlier" in line for line in said)
    assert resumed.record.metrics == whole.record.metrics
    assert resumed.record.rounds[2]["metrics"] == whole.record.rounds[2]["metrics"]
    assert resumed.record.teacher_queries == whole.record.teacher_queries  # round 1's answers counted, though read


@needs_fmnist
def test_a_damaged_round_is_refused(runs):
    from zoo.train import train

    first = train(active_cfg(runs, "active.selector=uniform", "run.id=damaged"), say=lambda *a: None)
    (first.run_dir / "record.json").unlink()
    student = first.run_dir / "rounds" / "1" / "student.safetensors"
    student.write_bytes(student.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        train(active_cfg(runs, "active.selector=uniform", "run.id=damaged"), say=lambda *a: None)


@pytest.mark.parametrize("override, message", [
    ("active.budget=300", "exceed the pool of 400"),
    ("active.labelled=0", "active.labelled=0"),
    ("active.fixed_mistakes=360", "m=360 teacher mistakes in a pool of 360"),
    ("active.mistakes=half", "active.mistakes='half'"),
    ("active.selector=margn", "unknown selector 'margn'"),
    ("active.validation=600", "exceeds the 500 examples of the val split"),
    ("method=kd", "not .kd."),
])
@needs_fmnist
def test_bad_active_settings_fail_in_one_line(runs, tmp_path, override, message):
    from zoo.train import train

    with pytest.raises(ZooError, match=message) as caught:
        train(active_cfg(runs, override), say=lambda *a: None)
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.glob("runs/*/*")), "a refused run leaves no run folder behind"


def test_round_weights_estimate_the_specs_loss():
    """Per-sample weights N/|L| and w N/|D|: the mean over all of L and D is (1/|L|) sum_L + w (1/|D|) sum_D."""
    from zoo.active import round_train_set
    from zoo.data.base import TensorDictDataset

    train = TensorDictDataset(torch.randn(10, 3), torch.arange(10) % 2)
    data = round_train_set(train, np.array([0, 1, 2]), np.array([5, 6]), torch.tensor([[0.3, 0.7], [0.6, 0.4]]),
                           soft_weight=2.0)
    batch = data.__getitems__(list(range(5)))
    assert batch["targets"].tolist() == [0, 1, 0, -1, -1]  # D's true labels never reach the loss
    assert batch["weight"].tolist() == pytest.approx([5 / 3] * 3 + [5.0] * 2)
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0, 6.0])
    assert float((batch["weight"] * losses).mean()) == pytest.approx(2.0 + 2.0 * 5.0)


def test_record_rounds_survive_a_round_trip(tmp_path):
    from zoo.records import read_record

    path = tmp_path / "r.json"
    raw = {"task": "t", "run_id": "1", "method": "active_kd", "seed": 0, "student": {"name": "s", "params": 1},
           "teachers": [], "metrics": {}, "teacher_metrics": {}, "config": {}, "teacher_queries": {"queries": 4},
           "wall_time_s": {}, "data": {}, "rounds": [{"round": 0, "queries_total": 0}]}
    path.write_text(json.dumps(raw))
    assert read_record(path).rounds == raw["rounds"]


@pytest.mark.parametrize("task", ["rad_cifar10", "rad_svhn"])
def test_paper_tasks_run_on_fixtures_in_the_real_formats(runs, tmp_path, task):
    """The paper tasks as shipped (ResNet-50 teacher, ResNet-18 student), on a few dozen images written in the
    official formats, with the sizes shrunk to fit and the fits cut to one batch."""
    from tests.test_cifar_svhn import fake_cifar10, fake_svhn
    from zoo.config import compose
    from zoo.train import train

    root = fake_cifar10(tmp_path) if task == "rad_cifar10" else fake_svhn(tmp_path, train=60)
    cfg = compose(task, [*runs, f"data.root={root}", "data.val_size=10", "data.train_slice=[10,null]",
                         "teacher.recipe.data.train_slice=[0,10]", "teacher.recipe.epochs=1", "active.labelled=8",
                         "active.pool=30", "active.validation=5", "active.rounds=2", "active.budget=4",
                         "active.fixed_mistakes=3", "trainer=cpu", "trainer.fast_dev_run=true",
                         "trainer.enable_progress_bar=false"])
    record = train(cfg, say=lambda *a: None).record
    assert record.teacher_queries["queries"] == 8 and record.teacher_queries["validation"] == 5
    assert [r["queries_total"] for r in record.rounds] == [0, 4, 8]


def round_record(run_id: str, selector: str, seed: int, accs: list[float], wrong: list[float]):
    """An rad_fashion_mnist record with only what a board reads: two rounds of 100 queries."""
    from zoo.records import ModelInfo, Record

    rounds = [{"round": i, "queries_total": 100 * i, "metrics": {"test/acc": acc},
               **({"teacher_wrong": wrong[i - 1]} if i else {})} for i, acc in enumerate(accs)]
    return Record(task="rad_fashion_mnist", run_id=run_id, method="active_kd", seed=seed,
                  student=ModelInfo("mlp.small", 101_770, flops=203_000),
                  teachers=[ModelInfo("convnet.base", 94_186, flops=2_000_000)], metrics={"test/acc": accs[-1]},
                  teacher_metrics={"test/acc": 0.8},
                  config={"method": {"name": "active_kd"}, "active": {"selector": selector}},
                  teacher_queries={"queries": 200, "validation": 50, "samples": 250}, wall_time_s={}, data={},
                  rounds=rounds)


def test_an_active_board_has_query_costs_curves_and_a_reproducible_plot(tmp_path):
    from zoo import leaderboard
    from zoo.curves import curves_of, write_png

    records = [round_record("u0", "uniform", 0, [0.70, 0.74, 0.76], [0.2, 0.1]),
               round_record("u1", "uniform", 1, [0.72, 0.76, 0.78], [0.2, 0.3]),
               round_record("r0", "rad", 0, [0.70, 0.75, 0.79], [0.3, 0.3])]
    markdown, table = leaderboard.render("rad_fashion_mnist", records, code=None)
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| variant | source"))
    assert header.endswith("| teacher forward passes | teacher queries | from |")
    uniform = next(line for line in lines if line.startswith("| uniform | measured"))
    assert "|  | 200 | runs at" in uniform  # no forward passes column value: its cost is queries
    assert "| uniform | 0.7100 ± 0.0141 | 0.7500 ± 0.0141 | 0.7700 ± 0.0141 |" in lines
    assert "| rad | 0.7000 | 0.7500 | 0.7900 |" in lines
    assert "| uniform | 0.2000 ± 0.0000 | 0.2000 ± 0.1414 | 0.2000 ± 0.0707 |" in lines  # per seed: .15, .25
    assert "teacher queries" in table.splitlines()[0]
    rows, metric = leaderboard.rows_of("rad_fashion_mnist", records)
    curves = curves_of(rows, metric)
    assert [c.variant for c in curves] == ["uniform", "rad"] and curves[0].queries == [0, 100, 200]
    assert write_png(curves, metric, "rad_fashion_mnist", tmp_path / "a.png")
    write_png(curves, metric, "rad_fashion_mnist", tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.slow  # 5 arms x 3 seeds of five short rounds on real Fashion-MNIST: about 8 minutes on one core
@needs_fmnist
def test_rad_on_fashion_mnist_against_uniform_and_margin(runs, tmp_path):
    """Every arm lands within its board row (``zoo reproduce`` exits non-zero otherwise); the premise (uncertainty
    sampling asks exactly where the teacher errs) and RAD's trade (fewer of its queries answered wrongly than
    margin's) must hold; the issue's claim, RAD's accuracy >= uniform's and margin's at equal queries, is judged."""
    from zoo.cli import main
    from zoo.records import read_record

    code = main(["reproduce", "task=rad_fashion_mnist", "seeds=3", "trainer.enable_progress_bar=false", *runs])
    summary = json.loads(next((tmp_path / "runs" / "rad_fashion_mnist").glob("reproduce-*.json")).read_text())
    arms = summary["arms"]
    assert code == 0, {name: (arm["mean"], arm["std"]) for name, arm in arms.items()}
    wrong: dict[str, list[float]] = {}
    for path in summary["records"]:
        record = read_record(path)
        rounds = record.rounds[1:]
        wrong.setdefault(record.config["active"]["selector"], []).append(
            sum(r["teacher_wrong"] * r["queries"] for r in rounds) / sum(r["queries"] for r in rounds))
    mean_wrong = {name: float(np.mean(values)) for name, values in wrong.items()}
    assert mean_wrong["margin"] > mean_wrong["uniform"] + 0.05, mean_wrong  # the premise
    assert mean_wrong["rad"] < mean_wrong["margin"], mean_wrong
    if not (arms["rad"]["mean"] >= arms["uniform"]["mean"] and arms["rad"]["mean"] >= arms["margin"]["mean"]):
        pytest.xfail("claim fails: " + ", ".join(f"{name} {arm['mean']:.4f}" for name, arm in arms.items()))


def test_damaged_saved_queries_are_one_line_errors(tmp_path):
    from zoo.active import read_queries, write_queries

    path = tmp_path / "queries.safetensors"
    queries = {"picked": torch.tensor([3, 1]), "soft": torch.rand(2, 4), "keep": torch.tensor([True, False]),
               "mistakes": torch.tensor(2)}
    write_queries(queries, path)
    assert not list(tmp_path.glob("*.partial"))
    assert torch.equal(read_queries(path)["picked"], queries["picked"])
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="unreadable") as caught:
        read_queries(path)
    assert "\n" not in str(caught.value)
