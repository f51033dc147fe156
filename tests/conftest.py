"""Shared fixtures: every test gets its own ZOO_HOME; run folders go to a temp dir."""

import os
from pathlib import Path

import pytest

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Small, fast settings for the embedded sets: no progress bars, few epochs.
QUICK = ["trainer.enable_progress_bar=false", "trainer.max_epochs=3", "teacher.recipe.epochs=3"]
# task=detr_kitti on a kitti_mini of 8 + 4 frames of sklearn digits at 48x144, tiny random DETRs, 1-epoch
# teacher: seconds per run.
DETR_TINY = ["data=kitti_mini", "data.num_train=8", "data.num_val=4", "data.objects=digits", "data.canvas=[48,144]",
             "data.image_size=[48,144]", "data.batch_size=4", "teacher.recipe.epochs=1", "trainer.fast_dev_run=true",
             "trainer.enable_progress_bar=false"]


@pytest.fixture(autouse=True)
def zoo_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("zoo_home")
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.delenv("ZOO_RUN_ID", raising=False)
    return home


@pytest.fixture(scope="session")
def shared_zoo_home(tmp_path_factory) -> Path:
    """A ZOO_HOME kept across tests, for those that reuse a trained teacher."""
    return tmp_path_factory.mktemp("shared_zoo_home")


@pytest.fixture
def runs(tmp_path) -> list[str]:
    """Overrides that send run folders to this test's temp dir."""
    return [f"run.root={tmp_path / 'runs'}"]


def has_fashion_mnist() -> bool:
    return (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file() or os.environ.get("ZOO_FMNIST_ROOT")
