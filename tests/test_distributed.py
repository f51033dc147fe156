"""DDP on CPU (gloo) through Lightning: two processes, one valid record."""

import json
import os
import subprocess
import sys

from tests.helpers import QUICK


def test_ddp_two_cpu_processes_write_one_valid_record(tmp_path, zoo_home):
    env = {**os.environ, "ZOO_HOME": str(zoo_home)}
    env.pop("ZOO_RUN_ID", None)
    command = [sys.executable, "-m", "zoo", "train", "task=kd_digits", *QUICK, f"run.root={tmp_path}",
               "trainer.strategy=ddp", "trainer.devices=2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = list(tmp_path.rglob("record.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["hardware"]["world_size"] == 2
    assert record["config"]["trainer"]["strategy"] == "ddp"
    # Each rank saw half the training set once in epoch 1 (cache cold), summed over ranks.
    n_train = record["data"]["sizes"]["train"]
    assert n_train <= record["teacher_queries"]["samples"] <= n_train + 2
    assert 0.5 < record["metrics"]["test/acc"] <= 1.0


def test_a_staged_run_under_ddp_trains_every_stage_on_both_ranks_and_writes_one_record(tmp_path, zoo_home):
    """Each stage is a fit of its own: the second and later fits must find the ranks started by the first, and
    stages that leave parameters without a gradient (the head during latent distillation) must not stall DDP."""
    from tests.test_ernie_tiny import TINY_RECIPE
    from tests.test_text import write_tweets

    csv_path = write_tweets(tmp_path / "t.csv")
    general = tmp_path / "general.txt"
    general.write_text("".join(f"the {w} of the city was said to be {v} today\n"
                               for w in ("news", "road", "car") for v in ("great", "awful", "fine")))
    env = {**os.environ, "ZOO_HOME": str(zoo_home)}
    env.pop("ZOO_RUN_ID", None)
    command = [sys.executable, "-m", "zoo", "train", "task=ernie_tiny_tweets", f"data.path={csv_path}",
               "data.train_subset=null", "data.length_buckets=2", "student.arch=bert-l2-h32.classifier",
               "teacher.roles.pretrained.arch=bert-l2-h32.classifier", "teacher.roles.pretrained.pretrained=false",
               f"+teacher.roles.pretrained.recipe={TINY_RECIPE}",
               "teacher.roles.finetuned.arch=bert-l2-h32.classifier", "teacher.roles.finetuned.recipe.pretrained=false",
               "teacher.roles.finetuned.recipe.epochs=1",
               f"datasets.general.sources=[{{format: lines, path: '{general}'}}]", "datasets.general.max_length=16",
               "datasets.general.epoch_size=24", "trainer.enable_progress_bar=false",
               f"run.root={tmp_path / 'runs'}", "trainer.strategy=ddp", "trainer.devices=2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = list((tmp_path / "runs").rglob("record.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["hardware"]["world_size"] == 2
    assert [stage["name"] for stage in record["stages"]] == ["gd", "ged", "tad", "tsd"]
