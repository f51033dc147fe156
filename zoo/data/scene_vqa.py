"""``scene_vqa``: a small visual question answering set, generated once, written in LLaVA's real formats.

It exists so that the LLaVA-MoD path (instruction and preference files, the chat template, visual tokens, greedy
answers, POPE-style hallucination checks) runs on a CPU in minutes. The module writes ordinary LLaVA JSON, RLAIF-V
JSON and PNG files and reads them back with the same readers as any LLaVA data (``zoo.data.llava``).

What is real and what is templated:

* Images (real): 56 x 56 scenes of a 2 x 2 grid of 28-px cells (top left, top right, bottom left, bottom right),
  1 to 3 of them holding a real Fashion-MNIST item (``objects: fashion_mnist``; or a real sklearn 8x8 digit scaled to
  24 px, ``objects: digits``), the others black. Cells and classes are drawn uniformly (a class may repeat). Training
  scenes take items from Fashion-MNIST's training file, validation and test scenes from the two halves of its test
  file (digits: every fifth digit is held out for them).
* Text (templated): questions and short answers about what is in each scene:
  presence ("is there a bag in the image?" yes / no), class at a position ("what is in the top left?" "a bag" /
  "nothing"), position ("where is the bag?" "top left" or "top left and bottom right"), count ("how many objects are
  there?", "how many bags are there?" "two"). A "no" question names an absent class: one that looks like a present
  one where there is such (``absent_classes: similar``: shirt for a tee, sneaker for a sandal; POPE's adversarial
  idea with visual instead of co-occurrence similarity) or any absent class (``absent_classes: random``, POPE's
  random).

Files (under ``<ZOO_HOME>/data/scene_vqa/<key>``, the key a hash of the parameters):

* ``train.json``: LLaVA instruction records, one per training scene (as in the captions and preference files, so a
  ``train_subset`` picks the same scenes in all three), a multi-turn conversation of 5 questions
  (a present and an absent presence question, a class-at-position, a count and a position question, shuffled), the
  image placeholder in the first turn, as LLaVA-Instruct's records are;
* ``val.json``, ``test.json``: one question per record (as evaluation files are): per scene a present and an absent
  presence question, the class at an occupied cell and at an empty one (where there is one), a count and a position;
* ``captions.json``: one caption per training scene ("a bag in the top left and a coat in the bottom right"), in the
  LLaVA-Pretrain layout (human: ``<image>`` and an instruction, gpt: the caption), for the adaptor stage;
* ``preference.json``: one RLAIF-V pair per training scene, the correct answer chosen and a wrong one rejected:
  "yes" to an absent class (35 % of the pairs), an absent class named for an empty or an occupied cell (20 %), one too
  many in a count (10 %), all hallucinations; and "no" to a present class (35 %), so that the pairs do not teach
  "no" alone;
* ``tokenizer/``: a word-level tokenizer of every word the files use, with Qwen's chat tokens;
* ``MANIFEST.json``: generator, version, parameters and the sha256 of every file, checked on every load.

Every scene draws from its own generator seeded with (``generator_seed``, split, scene), so the files are identical
on every machine.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from zoo.atomic import build_once
from zoo.data.llava import LlavaInstructDataModule, PreferenceDataModule
from zoo.data.llava_format import IM_END, IM_START, IMAGE_PLACEHOLDER, SYSTEM
from zoo.digests import sha256_file
from zoo.errors import ConfigError, DataError
from zoo.paths import zoo_home
from zoo.registry import DATASETS

GENERATOR, VERSION = "zoo.data.scene_vqa", 1
CELL, GRID = 28, 2
POSITIONS = ("top left", "top right", "bottom left", "bottom right")  # cell k is at row k // 2, column k % 2
NAMES = {"fashion_mnist": ("tee", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"),
         "digits": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")}
LOOK_ALIKE = {"fashion_mnist": ({0, 2, 3, 4, 6}, {5, 7, 9}, {1}, {8}),  # tops; footwear; trousers; bags
              "digits": ({3, 5, 8}, {1, 7}, {4, 9}, {0, 6}, {2})}
PLURAL = {"dress": "dresses", "six": "sixes"}
NUMBERS = ("zero", "one", "two", "three", "four")
CAPTION_ASK = "describe the image briefly."
ABSENT_CLASSES = ("similar", "random")


# ---------------------------------------------------------------- sources


def load_items(objects: str, objects_root: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (uint8 item images [N, 28, 28], labels [N]): train, val and test drawn from disjoint items."""
    if objects == "fashion_mnist":
        from zoo.data.fashion_mnist import read_splits

        read = read_splits(objects_root, "apt-get install dataset-fashion-mnist, set data.objects_root=<folder>, or "
                           "use data.objects=digits", whose=" (the scene_vqa objects)")
        train, test = read["train"], read["test"]
        half = len(test[1]) // 2
        return {"train": train, "val": (test[0][:half], test[1][:half]), "test": (test[0][half:], test[1][half:])}
    if objects == "digits":
        from PIL import Image
        from sklearn.datasets import load_digits

        digits = load_digits()
        big = np.zeros((len(digits.images), CELL, CELL), dtype=np.uint8)
        for i, image in enumerate((digits.images * (255 / 16)).round().astype(np.uint8)):
            big[i, 2:26, 2:26] = np.asarray(Image.fromarray(image).resize((24, 24), Image.BILINEAR))
        held = np.arange(len(big)) % 5 == 0
        val, test = held & (np.arange(len(big)) % 10 == 0), held & (np.arange(len(big)) % 10 != 0)
        return {"train": (big[~held], digits.target[~held]), "val": (big[val], digits.target[val]),
                "test": (big[test], digits.target[test])}
    raise ConfigError(f"data.objects must be fashion_mnist or digits, got '{objects}'")


# ---------------------------------------------------------------- one scene and its questions


class Scene:
    """Which class (or None) each cell holds, and how to talk about it."""

    def __init__(self, cells: list[int | None], names: tuple[str, ...], groups: tuple[set[int], ...]):
        self.cells, self.names, self.groups = cells, names, groups
        self.present = sorted({c for c in cells if c is not None})

    def a(self, cls: int) -> str:
        name = self.names[cls]
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"

    def plural(self, cls: int) -> str:
        name = self.names[cls]
        return PLURAL.get(name, name + "s")

    def absent(self, rng: np.random.Generator, absent_classes: str) -> int:
        """An absent class: one that looks like a present one where there is such (``similar``), else any."""
        absent = [c for c in range(len(self.names)) if c not in self.present]
        if absent_classes == "similar":
            alike = [c for c in absent if any(c in g and p in g for g in self.groups for p in self.present)]
            absent = alike or absent
        return int(rng.choice(absent))

    def where(self, cls: int) -> str:
        return " and ".join(POSITIONS[k] for k, c in enumerate(self.cells) if c == cls)

    def caption(self) -> str:
        return " and ".join(f"{self.a(c)} in the {POSITIONS[k]}" for k, c in enumerate(self.cells) if c is not None)

    # each question: (text, correct answer, a hallucinated answer or None)
    def presence(self, cls: int) -> tuple[str, str, str]:
        there = cls in self.present
        return f"is there {self.a(cls)} in the image?", "yes" if there else "no", "no" if there else "yes"

    def class_at(self, k: int, rng: np.random.Generator, absent_classes: str) -> tuple[str, str, str]:
        held = self.cells[k]
        answer = "nothing" if held is None else self.a(held)
        return f"what is in the {POSITIONS[k]}?", answer, self.a(self.absent(rng, absent_classes))

    def count(self, cls: int | None) -> tuple[str, str, str]:
        if cls is None:
            n = sum(c is not None for c in self.cells)
            return "how many objects are there?", NUMBERS[n], NUMBERS[n + 1]
        n = self.cells.count(cls)
        return f"how many {self.plural(cls)} are there?", NUMBERS[n], NUMBERS[n + 1]

    def position(self, cls: int) -> tuple[str, str, None]:
        return f"where is the {self.names[cls]}?", self.where(cls), None


def draw_scene(rng: np.random.Generator, items: tuple[np.ndarray, np.ndarray], objects: str
               ) -> tuple[np.ndarray, Scene]:
    """A 56 x 56 uint8 image and its scene."""
    images, labels = items
    count = int(rng.integers(1, GRID * GRID))  # 1..3 objects: at least one cell stays empty
    cells: list[int | None] = [None] * (GRID * GRID)
    canvas = np.zeros((CELL * GRID, CELL * GRID), dtype=np.uint8)
    for k in rng.choice(GRID * GRID, size=count, replace=False):
        cls = int(rng.integers(len(NAMES[objects])))
        pool = np.flatnonzero(labels == cls)
        item = images[int(rng.choice(pool))]
        row, col = divmod(int(k), GRID)
        canvas[row * CELL:(row + 1) * CELL, col * CELL:(col + 1) * CELL] = item
        cells[int(k)] = cls
    return canvas, Scene(cells, NAMES[objects], LOOK_ALIKE[objects])


def training_questions(scene: Scene, rng: np.random.Generator, absent_classes: str) -> list[tuple[str, str, Any]]:
    present = int(rng.choice(scene.present))
    questions = [scene.presence(present), scene.presence(scene.absent(rng, absent_classes)),
                 scene.class_at(int(rng.integers(GRID * GRID)), rng, absent_classes),
                 scene.count(None if rng.random() < 0.5 else int(rng.choice(scene.present))),
                 scene.position(int(rng.choice(scene.present)))]
    return [questions[i] for i in rng.permutation(len(questions))]


def evaluation_questions(scene: Scene, rng: np.random.Generator, absent_classes: str) -> list[tuple[str, str, Any]]:
    occupied = [k for k, c in enumerate(scene.cells) if c is not None]
    empty = [k for k, c in enumerate(scene.cells) if c is None]
    present = int(rng.choice(scene.present))
    questions = [scene.presence(present), scene.presence(scene.absent(rng, absent_classes)),
                 scene.class_at(int(rng.choice(occupied)), rng, absent_classes),
                 scene.class_at(int(rng.choice(empty)), rng, absent_classes),
                 scene.count(None if rng.random() < 0.5 else present), scene.position(present)]
    return questions


def preference_question(scene: Scene, rng: np.random.Generator, absent_classes: str) -> tuple[str, str, str]:
    """One pair a scene: "yes" to an absent class (35 %); "no" to a present one (35 %); an absent class named for a
    cell (20 %); one too many in a count (10 %). The denials balance the false yeses: with pairs that only reject
    "yes", preference distillation learned to answer "no" to everything (seed 0: POPE yes-ratio 0.09)."""
    kind = rng.random()
    if kind < 0.35:
        return scene.presence(scene.absent(rng, absent_classes))
    if kind < 0.7:
        return scene.presence(int(rng.choice(scene.present)))
    if kind < 0.9:
        return scene.class_at(int(rng.integers(GRID * GRID)), rng, absent_classes)
    return scene.count(int(rng.choice(scene.present)))


# ---------------------------------------------------------------- the files


def turn(who: str, text: str) -> dict[str, str]:
    return {"from": who, "value": text}


def write_set(folder: Path, params: dict[str, Any], objects_root: str | None) -> None:
    """Every file of the set into ``folder`` (see the module docstring)."""
    from PIL import Image

    items = load_items(params["objects"], objects_root)
    absent_classes = params["absent_classes"]
    (folder / "images").mkdir(parents=True)
    records: dict[str, list] = {"train": [], "val": [], "test": [], "captions": [], "preference": []}
    for code, (split, n) in enumerate((("train", params["num_train"]), ("val", params["num_val"]),
                                       ("test", params["num_test"]))):
        for i in range(n):
            rng = np.random.default_rng([params["generator_seed"], code, i])
            image, scene = draw_scene(rng, items[split], params["objects"])
            name = f"{split}_{i:06d}.png"
            Image.fromarray(image).save(folder / "images" / name, format="PNG")
            scene_id = f"{split}-{i}"
            if split == "train":
                questions = training_questions(scene, rng, absent_classes)
                turns = []
                for j, (question, answer, _) in enumerate(questions):
                    turns += [turn("human", f"{IMAGE_PLACEHOLDER}\n{question}" if j == 0 else question),
                              turn("gpt", answer)]
                records["train"].append({"id": scene_id, "image": name, "conversations": turns})
                records["captions"].append({"id": scene_id, "image": name, "conversations": [
                    turn("human", f"{IMAGE_PLACEHOLDER}\n{CAPTION_ASK}"), turn("gpt", scene.caption())]})
                question, chosen, rejected = preference_question(scene, rng, absent_classes)
                prompt = turn("human", f"{IMAGE_PLACEHOLDER}\n{question}")
                records["preference"].append({"id": scene_id, "image": name, "chosen": [prompt, turn("gpt", chosen)],
                                              "rejected": [prompt, turn("gpt", rejected)]})
            else:
                for j, (question, answer, _) in enumerate(evaluation_questions(scene, rng, absent_classes)):
                    records[split].append({"id": f"{scene_id}-{j}", "image": name, "conversations": [
                        turn("human", f"{IMAGE_PLACEHOLDER}\n{question}"), turn("gpt", answer)]})
    for name, content in records.items():
        (folder / f"{name}.json").write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    write_tokenizer(folder / "tokenizer", records)


def words(text: str) -> list[str]:
    """The pieces the word-level tokenizer splits ``text`` into (its pre-tokenizer's)."""
    from tokenizers.pre_tokenizers import Whitespace

    return [piece for piece, _ in Whitespace().pre_tokenize_str(text)]


def write_tokenizer(folder: Path, records: dict[str, list]) -> None:
    """A word-level tokenizer of every word of the set (sorted: the same ids on every machine), with the chat tokens
    as special tokens, saved as a transformers tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    texts = [SYSTEM, "system", "user", "assistant", CAPTION_ASK]
    for content in records.values():
        for record in content:
            for key in ("conversations", "chosen", "rejected"):
                texts += [t["value"].replace(IMAGE_PLACEHOLDER, "") for t in record.get(key, [])]
    vocabulary = sorted({w for text in texts for w in words(text)})
    specials = ["<|endoftext|>", IM_START, IM_END, "<unk>"]
    ids = {token: i for i, token in enumerate(specials + vocabulary)}
    tokenizer = Tokenizer(models.WordLevel(ids, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece()  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|endoftext|>", unk_token="<unk>",
                                   eos_token=IM_END, additional_special_tokens=[IM_START, IM_END])
    fast.save_pretrained(str(folder))


def parameters(cfg) -> dict[str, Any]:
    """What the set's files depend on; the folder is named by a hash of it."""
    counts = {key: int(cfg[key]) for key in ("num_train", "num_val", "num_test")}
    if min(counts.values()) < 1:
        raise ConfigError(f"data.num_train, num_val and num_test must be at least 1, got {counts}")
    if cfg.absent_classes not in ABSENT_CLASSES:
        raise ConfigError(f"data.absent_classes={cfg.absent_classes}", f"one of {', '.join(ABSENT_CLASSES)}")
    return {**counts, "objects": str(cfg.objects), "absent_classes": str(cfg.absent_classes),
            "generator_seed": int(cfg.generator_seed)}


def folder_key(params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"v{VERSION}-{params['objects']}-{digest}"


def verify(folder: Path) -> None:
    """The folder's files match its MANIFEST.json, else one line naming what differs."""
    hint = f"delete {folder}: it is generated again on the next run"
    try:
        manifest = json.loads((folder / "MANIFEST.json").read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"scene_vqa folder '{folder}' has no readable MANIFEST.json", hint) from err
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            raise DataError(f"scene_vqa file '{path}' is missing or does not match its sha256 in MANIFEST.json", hint)


def ensure_scene_vqa(cfg) -> Path:
    """The verified folder of the set ``cfg`` describes, generated first if absent (temp folder + rename)."""
    params = parameters(cfg)
    parent = Path(cfg.root).expanduser() if cfg.root else zoo_home() / "data" / "scene_vqa"
    folder = parent / folder_key(params)

    def write(temp: Path) -> None:
        write_set(temp, params, cfg.get("objects_root"))
        files = {p.relative_to(temp).as_posix(): sha256_file(p) for p in sorted(temp.rglob("*")) if p.is_file()}
        manifest = {"generator": GENERATOR, "version": VERSION, "parameters": params, "files": files}
        (temp / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    build_once(folder, write)
    verify(folder)
    return folder


@DATASETS.register("scene_vqa")
class SceneVqaDataModule(LlavaInstructDataModule):
    """scene_vqa's instruction files (``train``/``val``/``test``: train.json, ...; or captions.json alone)."""

    name = "scene_vqa"

    def __init__(self, cfg, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed, root=ensure_scene_vqa(cfg))


@DATASETS.register("scene_vqa_preference")
class SceneVqaPreferenceDataModule(PreferenceDataModule):
    """scene_vqa's preference pairs (preference.json)."""

    name = "scene_vqa_preference"

    def __init__(self, cfg, shuffle_seed: int = 0):
        super().__init__(cfg, shuffle_seed, root=ensure_scene_vqa(cfg))
