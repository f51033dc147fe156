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
