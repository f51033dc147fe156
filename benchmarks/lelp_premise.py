"""LELP's premise on its mini tasks, and what its one-off fit costs against one student epoch.

Premise: LELP can only help if the teacher's embedding holds structure that its few-class output does not. Linear
probes (multinomial logistic regression on standardised features, sklearn) are fitted on the students' training
subset and scored on the validation split, on these views of each example:

  pixels          the raw pixels (image tasks: what any student starts from)
  teacher logits  the teacher's C logits (all that Hinton KD passes on)
  embedding       the teacher's final embedding (what its head reads)
  null space      that embedding with the head's directions removed (P h: what LELP splits)
  lelp targets    the teacher logits plus LELP's S·C standardised projections u(x) (what LELP passes on)

Where the data hides subclasses (``lelp_fashion_mnist_bin``: five clothing classes per binary label) the probes
predict them and ``within-class`` is how often the probe names the right hidden class among those of the example's
own label (chance 1/5). Where it hides none (``lelp_tweets``) the probes predict the label itself: whether the null
space adds label information the teacher's head leaves out. Both report ``top-S share``: the fraction of the
within-class variance of the null-space embedding that the S directions LELP keeps explain (an isotropic cloud
gives S / (d - C)), the structure LELP's targets are made of.

Cost: the one-off fit (the teacher over the fitting examples, then null space, PCA, rotation) against one
epoch of the lelp student reading a warm teacher-output cache, timed in the same process.

    python benchmarks/lelp_premise.py                          # trains the teacher first in a temp ZOO_HOME
    python benchmarks/lelp_premise.py --zoo-home ~/.cache/zoo  # reuse stored teachers
    python benchmarks/lelp_premise.py --task lelp_tweets --zoo-home ~/.cache/zoo
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


def embed(teacher, head_path: str, datamodule, split: str) -> dict[str, np.ndarray]:
    """Inputs (flattened pixels; none for text), teacher logits, embeddings, labels and, where the data has them,
    hidden subclasses of a whole split, in the loader's fixed order."""
    captured, parts = [], {"inputs": [], "logits": [], "targets": [], "subclass": []}
    handle = dict(teacher.named_modules())[head_path].register_forward_pre_hook(
        lambda module, args: captured.append(args[0]))
    with torch.no_grad():
        for batch in datamodule.eval_loader(split):
            parts["logits"].append(teacher(batch["inputs"]))
            parts["targets"].append(batch["targets"])
            if isinstance(batch["inputs"], torch.Tensor):
                parts["inputs"].append(batch["inputs"].flatten(1))
            if "subclass" in batch:
                parts["subclass"].append(batch["subclass"])
    handle.remove()
    out = {name: torch.cat(values).numpy() for name, values in parts.items() if values}
    return {**out, "embedding": torch.cat(captured).numpy()}


def probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
          groups: list[list[int]] | None = None, val_label: np.ndarray | None = None) -> dict[str, float]:
    """Validation accuracy of a linear probe; with ``groups`` (the hidden classes of each label) also how often it
    names the right hidden class among those of the example's own label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(train_x, train_y)
    result = {"acc": float((model.predict(val_x) == val_y).mean())}
    if groups is not None:
        scores = model.predict_proba(val_x)
        column = {c: i for i, c in enumerate(model.classes_)}
        own = np.array([[column[c] for c in groups[label]] for label in val_label])
        pick = own[np.arange(len(own)), scores[np.arange(len(own))[:, None], own].argmax(axis=1)]
        result["within-class acc"] = float((model.classes_[pick] == val_y).mean())
    return result


def top_share(null_space: np.ndarray, labels: np.ndarray, subclasses: int) -> float:
    """Mean over classes of the within-class variance share of the top ``subclasses`` principal directions."""
    shares = []
    for c in np.unique(labels):
        centred = null_space[labels == c] - null_space[labels == c].mean(axis=0)
        variances = np.linalg.svd(centred, compute_uv=False) ** 2
        shares.append(float(variances[:subclasses].sum() / variances.sum()))
    return float(np.mean(shares))


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
    train = embed(teacher, cfg.method.teacher_head, datamodule, "train")
    val = embed(teacher, cfg.method.teacher_head, datamodule, "val")
    module = METHODS.get("lelp")(create_student(cfg, datamodule, None), teachers,
                                 MethodContext.of(datamodule, cfg.method, cfg.optim))
    head = module.teacher_head()
    from zoo.methods.lelp_projections import fit_subclass_map, null_space_projector

    subclasses = int(cfg.method.subclasses)
    projector = null_space_projector(head.weight.detach()).float().numpy()
    fitted = fit_subclass_map(torch.from_numpy(train["embedding"]), torch.from_numpy(train["targets"]),
                              head.weight.detach(), subclasses, str(cfg.method.directions),
                              int(cfg.method.directions_seed))

    def lelp_features(part):
        scores = fitted.scores(torch.from_numpy(part["embedding"])).flatten(1).numpy()
        return np.concatenate([part["logits"], scores], axis=1)

    views = {"pixels": lambda p: p["inputs"], "teacher logits": lambda p: p["logits"],
             "embedding": lambda p: p["embedding"], "null space": lambda p: p["embedding"] @ projector,
             "lelp targets": lelp_features}
    if "inputs" not in val:
        del views["pixels"]
    hidden = "subclass" in val
    if hidden:  # the fine class of a parity label: subclass s of label b is class 2s + b
        fine = {name: part["subclass"] * 2 + part["targets"] for name, part in (("train", train), ("val", val))}
        groups = [[c for c in range(2 * (int(fine["train"].max()) // 2 + 1)) if c % 2 == b] for b in range(2)]
        premise = {name: probe(view(train), fine["train"], view(val), fine["val"], groups, val["targets"])
                   for name, view in views.items()}
    else:
        premise = {name: probe(view(train), train["targets"], view(val), val["targets"])
                   for name, view in views.items()}
    share = top_share(train["embedding"] @ projector, train["targets"], subclasses)
    isotropic = subclasses / (train["embedding"].shape[1] - head.weight.shape[0])
    teacher_acc = float((val["logits"].argmax(axis=1) == val["targets"]).mean())

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

    target = "hidden classes" if hidden else "labels"
    print(f"\n{args.task}: teacher {infos[0].name} val acc {teacher_acc:.4f}; probes for the {target}, trained on "
          f"the {len(train['targets'])} student training examples, scored on {len(val['targets'])} validation ones")
    columns = ["acc", "within-class acc"] if hidden else ["acc"]
    print(f"{'features':<16}{'dims':>6}" + "".join(f"{column:>18}" for column in columns))
    for name, view in views.items():
        print(f"{name:<16}{view(val).shape[1]:>6}" + "".join(f"{premise[name][column]:>18.4f}" for column in columns))
    print(f"top-S share of the within-class null-space variance (S={subclasses}): {share:.3f} "
          f"(isotropic: {isotropic:.3f})")
    print(f"\none-off fit (teacher over {len(datamodule.splits['train'])} examples + projections): {fit_seconds:.2f} s;"
          f" one lelp student epoch (warm cache): {epoch_seconds:.2f} s; ratio {fit_seconds / epoch_seconds:.2f}")
    print(f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "task": args.task, "teacher_val_acc": teacher_acc, "probe_target": target, "probes": premise,
            "top_s_share": share, "isotropic_share": isotropic,
            "fit_seconds": fit_seconds, "epoch_seconds": epoch_seconds, "threads": torch.get_num_threads(),
            "versions": package_versions(), "hardware": hardware()}, indent=2))


if __name__ == "__main__":
    main()
