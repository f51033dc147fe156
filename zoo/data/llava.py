"""Data modules over LLaVA's files (``zoo.data.llava_format``): instruction data (``llava_instruct``, kind
``visual_qa``) and preference pairs (``rlaif_v``, kind ``visual_preference``, read only by stages of a staged run).

``data.root`` holds the JSON files named by ``train`` / ``val`` / ``test`` (null: no such split; pretraining captions
have only ``train``) and the images under ``image_folder`` (relative to root, or absolute). Text is laid out in the
qwen chat template with ``data.tokenizer`` (a Hub name, a local folder; null: the folder ``tokenizer`` in root, as a
generated set writes it) and cut to ``max_length`` tokens; images are prepared by ``data.image`` (size, mean, std:
the vision tower's). ``train_subset: N`` trains on a fixed random N records. ``cache_images`` keeps each decoded
image in memory after its first use (small sets).

Batches of instruction data: ``inputs = {"input_ids", "attention_mask", "labels", "images"}`` (right-padded ids with
the image sentinel, labels -100 but on answers, normalised images [B, 3, S, S]) and ``index``. Evaluation reads
``prompts(split)``: the prompts up to the assistant's turn and the reference answers. Batches of preference pairs:
``chosen`` and ``rejected`` (each such an ``inputs``) and ``index``.
"""

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from zoo.data.base import ZooDataModule, training_indices
from zoo.data.llava_format import IGNORE, ChatEncoder, Conversation, ImageSpec, read_instructions, read_preferences
from zoo.errors import DataError
from zoo.registry import DATASETS


class ImageStore:
    """Images of one data set as the tower reads them, decoded on first use and kept if ``cache``."""

    def __init__(self, spec: ImageSpec, cache: bool):
        self.spec, self.cache = spec, cache
        self._kept: dict[Path, torch.Tensor] = {}
        self._blank = torch.zeros(3, spec.size, spec.size, dtype=torch.uint8)

    def get(self, path: Path | None) -> torch.Tensor:
        if path is None:
            return self._blank  # a text-only record: the model reads no image for it
        if path in self._kept:
            return self._kept[path]
        image = self.spec.load(path)
        if self.cache:
            self._kept[path] = image
        return image

    def batch(self, paths: list[Path | None]) -> torch.Tensor:
        return self.spec.normalise(torch.stack([self.get(p) for p in paths]))


def collate_ids(rows: list[list[int]], pad_id: int, fill: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded [B, L] ids (padding ``fill``, default ``pad_id``) and the mask of real tokens."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id if fill is None else fill, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[b, : len(row)] = 1
    return ids, mask


class ConversationSet(Dataset):
    """Conversations served as training batches (``__getitems__``: a whole collated batch at once)."""

    def __init__(self, conversations: list[Conversation], encoder: ChatEncoder, images: ImageStore):
        self.conversations, self.encoder, self.images = conversations, encoder, images
        self._encoded: dict[int, tuple[list[int], list[int]]] = {}

    def __len__(self) -> int:
        return len(self.conversations)

    def encoded(self, i: int) -> tuple[list[int], list[int]]:
        if i not in self._encoded:
            self._encoded[i] = self.encoder.encode(self.conversations[i])
        return self._encoded[i]

    def inputs(self, indices: list[int]) -> dict[str, torch.Tensor]:
        pairs = [self.encoded(i) for i in indices]
        ids, mask = collate_ids([p[0] for p in pairs], self.encoder.pad_id)
        labels, _ = collate_ids([p[1] for p in pairs], self.encoder.pad_id, fill=IGNORE)
        images = self.images.batch([self.conversations[i].image for i in indices])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "images": images}

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        return {"inputs": self.inputs(list(indices)), "index": torch.as_tensor(indices)}

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])


class PromptSet(Dataset):
    """The first question of each conversation as a prompt for greedy decoding, with its reference answer."""

    def __init__(self, conversations: list[Conversation], encoder: ChatEncoder, images: ImageStore):
        self.conversations, self.encoder, self.images = conversations, encoder, images

    def __len__(self) -> int:
        return len(self.conversations)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        chosen = [self.conversations[i] for i in indices]
        ids, mask = collate_ids([self.encoder.prompt(c) for c in chosen], self.encoder.pad_id)
        return {"inputs": {"input_ids": ids, "attention_mask": mask,
                           "images": self.images.batch([c.image for c in chosen])},
                "questions": [c.question for c in chosen], "answers": [c.answer for c in chosen],
                "index": torch.as_tensor(indices)}


class LlavaFiles(ZooDataModule):
    """What both LLaVA data modules share: where the files are, the tokenizer, the images."""

    input_shape = ()
    num_classes = None

    def __init__(self, cfg, shuffle_seed: int = 0, root: Path | None = None):
        super().__init__(cfg, shuffle_seed)
        from zoo.archs.text import load_tokenizer

        if root is None and not cfg.root:
            raise DataError(f"data.root is not set: {self.name} reads its JSON files from a folder",
                            "set data.root=<the folder holding them>")
        self.root = Path(root if root is not None else cfg.root).expanduser()
        folder = Path(str(cfg.image_folder)).expanduser()
        self.image_folder = folder if folder.is_absolute() else self.root / folder
        # a set that brings its own tokenizer (a generated one) has it in root/tokenizer: data.tokenizer null
        self.vocabulary = str(cfg.tokenizer) if cfg.tokenizer else str(self.root / "tokenizer")
        self.tokenizer = load_tokenizer(self.vocabulary)
        self.encoder = ChatEncoder(self.tokenizer, int(cfg.max_length))
        self.images = ImageStore(ImageSpec.from_config(cfg.image), bool(cfg.get("cache_images", False)))

    def val_dataloader(self):
        """No batches where there is no validation file (captions, preference pairs): a stage on them skips
        validation, even a smoke run's."""
        return self._loader("val", train=False) if "val" in self.splits else []

    def file(self, name: str | None) -> Path | None:
        return None if name is None else self.root / str(name)

    def digest(self, *paths: Path | None) -> str:
        """A fingerprint of the files read and of how they are read."""
        digest = hashlib.sha256()
        for path in paths:
            if path is not None:
                digest.update(path.name.encode() + path.read_bytes())
        digest.update(f"{self.vocabulary}|{self.cfg.max_length}|{ImageSpec.from_config(self.cfg.image)}".encode())
        return digest.hexdigest()[:16]


@DATASETS.register("llava_instruct")
class LlavaInstructDataModule(LlavaFiles):
    name = "llava_instruct"
    kind = "visual_qa"

    def __init__(self, cfg, shuffle_seed: int = 0, root: Path | None = None):
        super().__init__(cfg, shuffle_seed, root)
        self.conversations: dict[str, list[Conversation]] = {}
        files = {split: self.file(cfg.get(split)) for split in ("train", "val", "test")}
        for split, path in files.items():
            if path is None:
                continue
            conversations = read_instructions(path, self.image_folder)
            if split == "train":
                keep = training_indices(np.arange(len(conversations)), cfg)
                conversations = [conversations[i] for i in keep]
            self.conversations[split] = conversations
            self.splits[split] = ConversationSet(conversations, self.encoder, self.images)
        self.fingerprint = self.digest(*files.values()) + f"-{len(self.conversations.get('train', []))}"
        self.max_new_tokens = int(cfg.max_new_tokens)

    def prompt_loader(self, split: str, limit_batches: int | None = None) -> DataLoader:
        """Prompts and reference answers of ``split`` for greedy decoding, on one process, in order."""
        dataset: Dataset = PromptSet(self.conversations[split], self.encoder, self.images)
        size = int(self.cfg.eval_batch_size)
        if limit_batches is not None:
            dataset = Subset(dataset, range(min(len(dataset), limit_batches * size)))
        return DataLoader(dataset, batch_size=size, shuffle=False, num_workers=0, collate_fn=self.collate_fn)


class PairSet(Dataset):
    """Preference pairs served as batches of chosen and rejected conversations."""

    def __init__(self, pairs, encoder: ChatEncoder, images: ImageStore):
        self.chosen = ConversationSet([p.conversation("chosen") for p in pairs], encoder, images)
        self.rejected = ConversationSet([p.conversation("rejected") for p in pairs], encoder, images)

    def __len__(self) -> int:
        return len(self.chosen)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        indices = list(indices)
        return {"chosen": self.chosen.inputs(indices), "rejected": self.rejected.inputs(indices),
                "index": torch.as_tensor(indices)}

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])


@DATASETS.register("rlaif_v")
class PreferenceDataModule(LlavaFiles):
    """RLAIF-V style preference pairs (``train`` only): data for a preference stage, never a task's own data."""

    name = "rlaif_v"
    kind = "visual_preference"

    def __init__(self, cfg, shuffle_seed: int = 0, root: Path | None = None):
        super().__init__(cfg, shuffle_seed, root)
        path = self.file(cfg.train)
        pairs = read_preferences(path, self.image_folder)
        keep = training_indices(np.arange(len(pairs)), cfg)
        self.splits = {"train": PairSet([pairs[i] for i in keep], self.encoder, self.images)}
        self.fingerprint = self.digest(path) + f"-{len(keep)}"
