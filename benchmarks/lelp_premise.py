"""LELP's premise on its mini task, and what its one-off fit costs against one student epoch.

Premise: LELP can only help if the teacher's embedding holds structure that its few-class output does not. On
``lelp_fashion_mnist_bin`` (binary labels, five hidden clothing classes per label) this script fits linear probes
(multinomial logistic regression on standardised features, sklearn) on the students' training subset and scores
them on the validation split, predicting the hidden 10 classes from:

  pixels          the raw 784 pixels (what any student starts from)
  teacher logits  the binary teacher's 2 logits (all that Hinton KD passes on)
  embedding       the teacher's final embedding (128-d: what its head reads)
  null space      that embedding with the head's directions removed (P h: what LELP splits)
  lelp targets    the teacher logits plus LELP's S·C standardised projections u(x) (what LELP passes on)

and reports ``within-class``: how often the probe names the right hidden class among the five of the example's
own binary class (chance 0.2).

Cost: the one-off fit (the teacher over the fitting examples, then null space, PCA, rotation) against one
epoch of the lelp student reading a warm teacher-output cache, timed in the same process.

    python benchmarks/lelp_premise.py                          # trains the teacher first in a temp ZOO_HOME
    python benchmarks/lelp_premise.py --zoo-home ~/.cache/zoo  # reuse stored teachers
"""

import argparse
import json
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from _timing import EpochTimer, zoo_home

from zoo.config import compose
from zoo.methods.base import MethodContext
from zoo.records import hardware, package_versions
from zoo.registry import DATASETS, METHODS
from zoo.runs import quiet_lightning
from zoo.students import create_student
from zoo.teachers import prepare_teachers
from zoo.train import make_teacher_cache


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (as for `zoo train`)")
    parser.add_argument("--task", default="lelp_fashion_mnist_bin")
    parser.add_argument("--zoo-home", default=None, help="ZOO_HOME to use (default: a fresh temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    return parser.parse_args()


def embed(teacher, head_path: str, split) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels, teacher logits, embeddings, binary labels and hidden subclasses of a whole split."""
    inputs, targets, subclass = split.inputs, split.targets, split.extras["subclass"]
    captured = []
    handle = dict(teacher.named_modules())[head_path].register_forward_pre_hook(
        lambda module, args: captured.append(args[0]))
    with torch.no_grad():
        logits = torch.cat([teacher(chunk) for chunk in inputs.split(1000)])
    handle.remove()
    return (inputs.flatten(1).numpy(), logits.numpy(), torch.cat(captured).numpy(), targets.numpy(),
            subclass.numpy())


def probe(train_x: np.ndarray, train_fine: np.ndarray, val_x: np.ndarray, val_fine: np.ndarray,
          val_binary: np.ndarray) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(train_x, train_fine)
    predicted = model.predict(val_x)
    scores = model.predict_proba(val_x)
    own = np.array([[c for c in range(10) if c % 2 == b] for b in val_binary])  # the five classes of its label
    within = own[np.arange(len(own)), scores[np.arange(len(own))[:, None], own].argmax(axis=1)]
    return {"10-class acc": float((predicted == val_fine).mean()), "within-class acc": float((within == val_fine)
                                                                                              .mean())}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with zoo_home(args.zoo_home, prefix="zoo-lelp-"):
        run(args)


def run(args: argparse.Namespace) -> None:
    quiet_lightning()
    cfg = compose(args.task, ["trainer.enable_progress_bar=false", *args.overrides])
    datamodule = DATASETS.get(cfg.data.name)(cfg.data, shuffle_seed=0)
    teachers, infos, _ = prepare_teachers(cfg, datamodule, say=print)
    teacher = teachers[0]

    # -- premise ----------------------------------------------------------------------------------------------
    train = embed(teacher, cfg.method.teacher_head, datamodule.splits["train"])
    val = embed(teacher, cfg.method.teacher_head, datamodule.splits["val"])
    module = METHODS.get("lelp")(create_student(cfg, datamodule, None), teachers,
                                 MethodContext.of(datamodule, cfg.method, cfg.optim))
    head = module.teacher_head()
    from zoo.methods.lelp_projections import fit_subclass_map, null_space_projector

    projector = null_space_projector(head.weight.detach()).float().numpy()
    fitted = fit_subclass_map(torch.from_numpy(train[2]), torch.from_numpy(train[3]), head.weight.detach(),
                              int(cfg.method.subclasses), str(cfg.method.directions), int(cfg.method.directions_seed))

    def lelp_features(part):
        scores = fitted.scores(torch.from_numpy(part[2])).flatten(1).numpy()
        return np.concatenate([part[1], scores], axis=1)

    views = {"pixels": lambda p: p[0], "teacher logits": lambda p: p[1], "embedding": lambda p: p[2],
             "null space": lambda p: p[2] @ projector, "lelp targets": lelp_features}
    premise = {name: probe(view(train), train[4] * 2 + train[3], view(val), val[4] * 2 + val[3], val[3])
               for name, view in views.items()}
    teacher_binary = float((val[1].argmax(axis=1) == val[3]).mean())

    # -- cost: the one-off fit against one student epoch --------------------------------------------------------
    def lelp_module(cache):
        return METHODS.get("lelp")(create_student(cfg, datamodule, None), teachers,
                                   MethodContext.of(datamodule, cfg.method, cfg.optim, cache))

    def one_epoch(module, timer=None) -> None:
        L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, devices=1,
                  accelerator=cfg.trainer.accelerator, callbacks=[timer] if timer else []).fit(module, datamodule)

    started = time.perf_counter()  # the teacher runs on every fitting example here: no cache
    lelp_module(None).fit_map(datamodule, min(len(datamodule.splits["train"]), int(cfg.method.fit_samples)))
    fit_seconds = time.perf_counter() - started
    one_epoch(lelp_module(make_teacher_cache(cfg, datamodule, teachers, infos)))  # untimed: fills the cache
    timer = EpochTimer()
    one_epoch(lelp_module(make_teacher_cache(cfg, datamodule, teachers, infos)), timer)
    epoch_seconds = timer.seconds

    print(f"\n{args.task}: teacher {infos[0].name} binary val acc {teacher_binary:.4f}; probes trained on the "
          f"{len(train[0])} student training images, scored on {len(val[0])} validation images")
    print(f"{'features':<16}{'dims':>6}{'10-class acc':>14}{'within-class acc':>18}")
    for name, view in views.items():
        print(f"{name:<16}{view(val).shape[1]:>6}{premise[name]['10-class acc']:>14.4f}"
              f"{premise[name]['within-class acc']:>18.4f}")
    print(f"\none-off fit (teacher over {len(datamodule.splits['train'])} images + projections): {fit_seconds:.2f} s;"
          f" one lelp student epoch (warm cache): {epoch_seconds:.2f} s; ratio {fit_seconds / epoch_seconds:.2f}")
    print(f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "task": args.task, "teacher_val_acc": teacher_binary, "probes": premise,
            "fit_seconds": fit_seconds, "epoch_seconds": epoch_seconds, "threads": torch.get_num_threads(),
            "versions": package_versions(), "hardware": hardware()}, indent=2))


if __name__ == "__main__":
    main()
