"""The mini tasks' vision tower pretrained once: CLIP's stand-in for the ``llava-tiny-*`` models.

LLaVA's CLIP tower comes pretrained, so that the language model reads visual tokens that already say what is in the
image. The tiny tower (``zoo.archs.vlm.TINY_TOWER``: a timm ViT on 56-px scenes with one 28-px patch per cell of a
2 x 2 grid) gets the same by a short supervised pretraining: the features LLaVA reads (the output of the
second-to-last block, one token per cell) are taught to name what each cell holds, one of the ten Fashion-MNIST
classes or empty (``what``), and which cell it is (``where``: CLIP's tokens carry their place in the image too),
through two linear heads. The tower hands on the heads' softmax outputs (15 numbers a token), not the raw features:
CLIP's features are readable to a language model because of its pretraining at scale, and two minutes of
pretraining are not that; with the raw features, the tiny decoders learned to count objects but not to name them
within the mini task's budget. This is the mini task's one departure from LLaVA's tower (the CLIP archs read
features as LLaVA does). The scenes are drawn on the fly from Fashion-MNIST's
real training items and labels (each cell filled with probability 0.6); scene_vqa's validation and test scenes use
its test items, which the tower never sees.

The weights are trained once (``PRETRAINING``: 1,500 steps of 256 scenes, AdamW at 1e-3, seed 0; about two minutes
on one core) and stored in ``<ZOO_HOME>/towers/<key>/tower.safetensors`` with a ``meta.json`` holding the key (the
tower and its pretraining), the file's sha256 and the held-out per-cell accuracy on scenes of test items; a file that
does not match its sha256 is trained again. The Fashion-MNIST idx files are read from ``ZOO_FMNIST_ROOT``, else from
Debian's /usr/share/datasets/fashion-mnist.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zoo.atomic import atomic_write_text
from zoo.digests import sha256_file
from zoo.paths import zoo_home

PRETRAINING = {"items": "fashion_mnist", "steps": 1500, "batch": 256, "lr": 1e-3, "seed": 0, "filled": 0.6}
EMPTY = 10  # the class of an empty cell


def fashion_mnist_root() -> str:
    return os.environ.get("ZOO_FMNIST_ROOT") or "/usr/share/datasets/fashion-mnist"


def scenes(images: np.ndarray, labels: np.ndarray, count: int, filled: float, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` normalised 2 x 2 scenes [count, 3, 56, 56] of the given items and each cell's class [count, 4]."""
    canvas, classes = torch.zeros(count, 1, 56, 56), torch.full((count, 4), EMPTY)
    for cell in range(4):
        row, col = divmod(cell, 2)
        take = torch.rand(count, generator=generator) < filled
        picked = torch.randint(len(images), (count,), generator=generator)[take].numpy()
        canvas[take, 0, row * 28:(row + 1) * 28, col * 28:(col + 1) * 28] = torch.from_numpy(images[picked]) / 255
        classes[take, cell] = torch.from_numpy(labels[picked].astype(np.int64))
    return (canvas.repeat(1, 3, 1, 1) - 0.5) / 0.5, classes


def pretrain(tower, items: dict, settings: dict) -> float:
    """Train ``tower`` (a ``zoo.archs.vlm.VisionTower``) in place; its held-out per-cell accuracy."""
    generator = torch.Generator().manual_seed(settings["seed"])
    tower.requires_grad_(True)
    what, where = tower.readout["what"], tower.readout["where"]
    optimizer = torch.optim.AdamW(tower.parameters(), lr=settings["lr"])
    images, labels = items["train"]
    cells = torch.arange(4).repeat(settings["batch"])
    for _ in range(settings["steps"]):
        x, y = scenes(images, labels, settings["batch"], settings["filled"], generator)
        features = tower.features(x)
        loss = nn.functional.cross_entropy(what(features).flatten(0, 1), y.flatten()) + \
            nn.functional.cross_entropy(where(features).flatten(0, 1), cells)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tower.requires_grad_(False)
    x, y = scenes(*items["test"], 2000, settings["filled"], torch.Generator().manual_seed(settings["seed"] + 1))
    with torch.no_grad():
        return float((what(tower.features(x)).argmax(-1) == y).float().mean())


def pretrained_weights(spec: dict, tower) -> Path:
    """The stored pretrained weights of the tower ``spec`` describes, trained into ``tower`` first if there are none
    (or they are damaged)."""
    from filelock import FileLock

    from zoo.data.scene_vqa import load_items
    from zoo.weights import save_weights

    key = {"tower": spec["timm"], "kwargs": spec["kwargs"], "seed": spec["seed"], "readout": spec["readout"],
           "pretraining": PRETRAINING}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = zoo_home() / "towers" / f"{spec['timm']}-{digest}"
    weights, meta = folder / "tower.safetensors", folder / "meta.json"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if weights.is_file() and meta.is_file() and json.loads(meta.read_text()).get("sha256") == sha256_file(weights):
            return weights
        print(f"pretraining the tiny vision tower once ({PRETRAINING['steps']} steps; stored in {folder})")
        items = load_items(PRETRAINING["items"], fashion_mnist_root())
        accuracy = pretrain(tower, {"train": items["train"], "test": items["test"]}, PRETRAINING)
        save_weights(tower, weights)
        atomic_write_text(meta, json.dumps({"key": key, "sha256": sha256_file(weights),
                                            "held_out_cell_accuracy": round(accuracy, 4)}, indent=2, sort_keys=True))
    return weights
