"""zoo publish writes a mirror that zoo download reads back, verified, to the same weights."""

import torch

from tests.helpers import QUICK
from zoo.cards import load_card
from zoo.cli import main
from zoo.config import compose
from zoo.hub import download
from zoo.records import read_record
from zoo.train import train
from zoo.weights import read_state_dict


def test_publish_then_download_gives_the_same_student(runs, tmp_path, capsys):
    result = train(compose("kd_digits", [*QUICK, *runs, "method=ce"]), say=lambda *_: None)
    mirror = tmp_path / "mirror"
    assert main(["publish", f"run={result.run_dir}", f"to={mirror}"]) == 0
    card_path = next(mirror.glob("*.yaml"))
    card = load_card(card_path)
    assert card.arch == "mlp.tiny" and card.weights.sha256 and card.weights.size
    assert all(m.source == f"record:{result.record.run_id}" for m in card.metrics)
    assert read_record(mirror / card.name / "record.json") == result.record
    fetched = download(card, progress=False)
    original = read_state_dict(result.run_dir / "student.safetensors")
    for key, value in read_state_dict(fetched).items():
        assert torch.equal(value, original[key])


def test_publish_needs_a_finished_run(tmp_path, capsys):
    assert main(["publish", f"run={tmp_path}", f"to={tmp_path / 'm'}"]) == 2
    assert "no config.yaml" in capsys.readouterr().err
