"""LLaVA's on-disk formats, read with one-line errors, and how one conversation becomes model inputs.

Instruction data (the LLaVA JSON, used by LLaVA-Pretrain, LLaVA-Instruct, MoE-LLaVA's and MobileVLM's mixes): a JSON
list of records

    {"id": "...", "image": "<path relative to the image folder>",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is ...?"}, {"from": "gpt", "value": "..."}, ...]}

Turns alternate human / gpt, starting with human; a record with an image has the placeholder ``<image>`` once, in
its first human turn; a record without ``image`` is text only. Preference data (RLAIF-V pairs as LLaVA-MoD's DPO
trainer reads them): ``{"id", "image", "chosen": [human turn, gpt turn], "rejected": [human turn, gpt turn]}``, the
two human turns equal. Other keys of a record are ignored, as LLaVA's loader ignores them.

A conversation is laid out in the ``qwen`` chat template (ChatML, the template LLaVA-MoD's Qwen scripts name):

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n
    <|im_start|>user\\n{human}<|im_end|>\\n<|im_start|>assistant\\n{gpt}<|im_end|>\\n   (per turn pair)

The image placeholder becomes the sentinel id ``IMAGE_ID`` (-200, as LLaVA's IMAGE_TOKEN_INDEX), which the model
replaces by the projected visual tokens; no <im_start>/<im_end> or patch tokens around them (LLaVA-MoD's setting).
Labels are -100 everywhere but on each gpt answer and the ``<|im_end|>`` that closes it (the stop token the model
must learn to emit). Unconfirmed (the released preprocessing was not read to this detail): whether the newline after
``<|im_end|>`` is a target too; here it is not.

Images are padded to a square with the mean colour (``image_aspect_ratio pad``), resized, and normalised with the
vision tower's mean and std (``ImageSpec``).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import DataError

if TYPE_CHECKING:
    import torch

IMAGE_PLACEHOLDER = "<image>"
IMAGE_ID = -200  # the sentinel id of the image in input_ids (LLaVA's IMAGE_TOKEN_INDEX); never a vocabulary id
IGNORE = -100  # labels that no loss reads
SYSTEM = "You are a helpful assistant."
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ROLES = {"human": "user", "gpt": "assistant"}


@dataclass(frozen=True)
class Conversation:
    """One record of instruction data: its id, its image file (None: text only) and its (human, gpt) turn pairs."""
    id: str
    image: Path | None
    turns: tuple[tuple[str, str], ...]

    @property
    def question(self) -> str:
        """The first human turn without the image placeholder: what an evaluation asks."""
        return self.turns[0][0].replace(IMAGE_PLACEHOLDER, "").strip()

    @property
    def answer(self) -> str:
        """The first gpt turn: the reference answer of an evaluation."""
        return self.turns[0][1]


@dataclass(frozen=True)
class PreferencePair:
    """One record of preference data: the prompt (a human turn), a chosen and a rejected answer."""
    id: str
    image: Path | None
    prompt: str
    chosen: str
    rejected: str

    def conversation(self, which: str) -> Conversation:
        return Conversation(self.id, self.image, ((self.prompt, self.chosen if which == "chosen" else self.rejected),))


# -- readers ---------------------------------------------------------------------------------------------------
def load_records(path: Path, what: str) -> list[dict[str, Any]]:
    """A JSON file holding a list of objects; any other content is one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file '{path}' not found", "check data.root and the file names in the data block")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a JSON file ({err})") from err
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: expected a JSON list of records (objects), as LLaVA's data files are")
    return records


def _where(path: Path, k: int, record: dict) -> str:
    return f"{path}: record {k} (id {record.get('id', '?')!r})"


def _image(path: Path, k: int, record: dict, image_folder: Path) -> Path | None:
    name = record.get("image")
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        raise DataError(f"{_where(path, k, record)}: 'image' is {name!r}, not a relative path")
    image = image_folder / name
    if not image.is_file():
        raise DataError(f"{_where(path, k, record)}: image '{name}' is not in the image folder {image_folder}",
                        "check data.image_folder, or remove the record")
    return image


def _turn_pairs(turns: Any, where: str, has_image: bool, answered: bool = True) -> tuple[tuple[str, str], ...]:
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: no turns", "a conversation is a list of {from, value} turns, human first")
    texts = []
    for i, turn in enumerate(turns):
        expected = "human" if i % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected or not isinstance(turn.get("value"), str):
            raise DataError(f"{where}: turn {i} is not a {{from: {expected}, value: text}} turn",
                            "turns alternate human and gpt, starting with human")
        texts.append(turn["value"])
    if len(texts) % 2 and not answered:
        texts.append("")  # a question to answer (zoo infer): its answer is to come
    if len(texts) % 2:
        raise DataError(f"{where}: the conversation has no response turn after its last human turn",
                        "end every conversation with a gpt turn, or remove the record")
    pairs = tuple((texts[i], texts[i + 1]) for i in range(0, len(texts), 2))
    placeholders = sum(text.count(IMAGE_PLACEHOLDER) for text in texts)
    if has_image and (placeholders != 1 or IMAGE_PLACEHOLDER not in pairs[0][0]):
        raise DataError(f"{where}: a record with an image needs the placeholder {IMAGE_PLACEHOLDER} once, in its first "
                        f"human turn (found {placeholders})")
    if not has_image and placeholders:
        raise DataError(f"{where}: {IMAGE_PLACEHOLDER} in a record without an image")
    return pairs


def read_instructions(path: Path, image_folder: Path, answered: bool = True) -> list[Conversation]:
    """A LLaVA instruction JSON, each record checked (see the module docstring); errors name file and record. With
    ``answered=False`` a conversation may end on a human turn (questions to answer), its answer then empty."""
    path, image_folder = Path(path), Path(image_folder)
    conversations = []
    for k, record in enumerate(load_records(path, "instruction data")):
        where = _where(path, k, record)
        if "conversations" not in record:
            raise DataError(f"{where}: no 'conversations'", "a LLaVA record has id, image and conversations")
        image = _image(path, k, record, image_folder)
        turns = _turn_pairs(record["conversations"], where, image is not None, answered)
        conversations.append(Conversation(str(record.get("id", k)), image, turns))
    return conversations


def read_preferences(path: Path, image_folder: Path) -> list[PreferencePair]:
    """An RLAIF-V style preference JSON, each record checked; errors name file and record."""
    path, image_folder = Path(path), Path(image_folder)
    pairs = []
    for k, record in enumerate(load_records(path, "preference data")):
        where = _where(path, k, record)
        missing = [key for key in ("chosen", "rejected") if key not in record]
        if missing:
            raise DataError(f"{where}: no {' or '.join(repr(m) for m in missing)}",
                            "a preference record has id, image, chosen and rejected")
        image = _image(path, k, record, image_folder)
        chosen = _turn_pairs(record["chosen"], f"{where} (chosen)", image is not None)
        rejected = _turn_pairs(record["rejected"], f"{where} (rejected)", image is not None)
        if len(chosen) != 1 or len(rejected) != 1:
            raise DataError(f"{where}: chosen and rejected must each be one human turn and one gpt turn")
        if chosen[0][0] != rejected[0][0]:
            raise DataError(f"{where}: chosen and rejected answer different prompts")
        pairs.append(PreferencePair(str(record.get("id", k)), image, chosen[0][0], chosen[0][1], rejected[0][1]))
    return pairs


# -- the chat template -------------------------------------------------------------------------------------------
class ChatEncoder:
    """Token ids and labels of conversations in the qwen chat template, for one tokenizer."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, int(max_length)
        unknown = (None, tokenizer.unk_token_id)
        missing = [t for t in (IM_START, IM_END) if tokenizer.convert_tokens_to_ids(t) in unknown]
        if missing:
            raise DataError(f"tokenizer {tokenizer.name_or_path} has no token {', '.join(missing)}: it cannot write "
                            "the qwen chat template", "use a Qwen tokenizer, or one written with these special tokens")
        self.stop_id = int(tokenizer.convert_tokens_to_ids(IM_END))
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_id)
        self._system = self.ids(f"{IM_START}system\n{SYSTEM}{IM_END}\n")

    def ids(self, text: str) -> list[int]:
        """``text``'s ids; the image placeholder becomes ``IMAGE_ID``."""
        ids: list[int] = []
        for i, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
            if i:
                ids.append(IMAGE_ID)
            if piece:
                ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
        return ids

    def user_turn(self, human: str) -> list[int]:
        return self.ids(f"{IM_START}user\n{human}{IM_END}\n{IM_START}assistant\n")

    def encode(self, conversation: Conversation) -> tuple[list[int], list[int]]:
        """(input ids, labels) of the whole conversation; labels are the ids on answers and their stop token, -100
        elsewhere; cut to ``max_length`` text tokens (the image counts as one here)."""
        ids, labels = list(self._system), [IGNORE] * len(self._system)
        for human, gpt in conversation.turns:
            prompt = self.user_turn(human)
            answer = self.ids(gpt) + [self.stop_id]
            newline = self.ids("\n")
            ids += prompt + answer + newline
            labels += [IGNORE] * len(prompt) + answer + [IGNORE] * len(newline)
        return ids[: self.max_length], labels[: self.max_length]

    def prompt(self, conversation: Conversation) -> list[int]:
        """The ids that ask the first question and open the assistant's answer: what greedy decoding continues."""
        return self.prompt_for(conversation.turns[0][0])

    def prompt_for(self, human: str) -> list[int]:
        """The prompt of one human turn (``<image>\\n`` and a question, for an image)."""
        return (self._system + self.user_turn(human))[: self.max_length]


# -- images ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSpec:
    """How an image file becomes the vision tower's input: square side, per-channel mean and std."""
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(cls, cfg) -> "ImageSpec":
        return cls(int(cfg.size), tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std))

    def load_array(self, path: Path) -> np.ndarray:
        """uint8 [3, size, size]: padded to a square with the mean colour, then resized (LLaVA's expand2square); numpy,
        as the ONNX runtime reads images without torch."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as raw:
                image = raw.convert("RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"{path}: not a readable image ({err})") from err
        side = max(image.size)
        if image.size[0] != image.size[1]:
            fill = tuple(int(round(m * 255)) for m in self.mean)
            square = Image.new("RGB", (side, side), fill)
            square.paste(image, ((side - image.size[0]) // 2, (side - image.size[1]) // 2))
            image = square
        if side != self.size:
            image = image.resize((self.size, self.size), Image.BICUBIC)
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))

    def load(self, path: Path) -> "torch.Tensor":
        """``load_array`` as a torch tensor."""
        import torch

        return torch.from_numpy(self.load_array(path))

    def normalise(self, images: "torch.Tensor") -> "torch.Tensor":
        """uint8 [B, 3, H, W] -> float, normalised."""
        import torch

        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (images.float() / 255 - mean) / std

    def normalise_array(self, images: np.ndarray) -> np.ndarray:
        """``normalise`` in numpy (float32 throughout, as torch computes it)."""
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, 3, 1, 1)
        return (images.astype(np.float32) / 255 - mean) / std
