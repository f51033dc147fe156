"""The deploy side of an exported vision-language student: its tokenizer (transformers) and two onnxruntime graphs,
no torch.

    vlm = OnnxVisionLanguageModel(DIR)
    vlm.answer(["scene.png"], ["Is there a bag in the picture?"])      # ["yes"]
    zoo infer model=DIR inputs=questions.json                         # LLaVA JSON: each record's image and question

The folder (``zoo.export.vlm``) holds ``vision.onnx``: normalised images [B, 3, S, S] -> the projected visual tokens
[B, N, d]; and ``decoder.onnx``: (input_ids [B, T] with ``IMAGE_ID`` at each of an image's N positions,
image_embeds [B, T, d] holding the visual tokens at those positions, attention_mask [B, T], padded on the left) ->
the next-token logits [B, V] at the last position. The token embeddings, the splice of the visual tokens, the
positions and every decoder layer (experts and routers included) are inside the decoder graph.

Greedy decoding runs without a KV cache: every step reruns the decoder over the prompt and the answer so far. That
is the documented alternative to exporting the cache (a graph per step shape, the cache as inputs and outputs): it
costs a factor of the answer's length in compute, small for the short answers these models give, and keeps one
plain graph. Prompts are laid out in the chat template the model was trained with (``zoo.data.llava_format``).
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoo.data.llava_format import IMAGE_ID, IMAGE_PLACEHOLDER, ChatEncoder, ImageSpec, read_instructions
from zoo.errors import ConfigError

SPEC_FILE, VISION, DECODER = "vlm.json", "vision.onnx", "decoder.onnx"
DECODER_INPUTS, DECODER_OUTPUT = ("input_ids", "image_embeds", "attention_mask"), "logits"
VISION_INPUT, VISION_OUTPUT = "images", "visual_tokens"


def is_vlm_export(folder: str | Path) -> bool:
    return (Path(folder) / SPEC_FILE).is_file()


class OnnxVisionLanguageModel:
    """Greedy answers of an exported vision-language student (see the module docstring)."""

    def __init__(self, folder: str | Path, providers: list[str] | None = None, threads: int | None = None,
                 verify: bool = True):
        from transformers import AutoTokenizer

        from zoo.export.runtime import check_export_files, make_session

        self.folder = Path(folder)
        if not is_vlm_export(self.folder):
            raise ConfigError(f"'{folder}' is not a vision-language export (no {SPEC_FILE})",
                              "pass model=<a folder written by zoo export of a visual_qa run>")
        if verify:  # off only for zoo export's own check, before export.json is written
            check_export_files(self.folder)  # the files zoo export checked, or a one-line error
        self.spec = json.loads((self.folder / SPEC_FILE).read_text(encoding="utf-8"))
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder / "tokenizer"))
        self.chat = ChatEncoder(self.tokenizer, int(self.spec["max_length"]))
        self.image = ImageSpec(int(self.spec["image"]["size"]), tuple(self.spec["image"]["mean"]),
                               tuple(self.spec["image"]["std"]))
        self.vision = make_session(self.folder / VISION, providers, threads)
        self.decoder = make_session(self.folder / DECODER, providers, threads)
        self.provider = self.decoder.get_providers()[0]
        self.stop_id, self.pad_id = int(self.spec["stop_id"]), int(self.spec["pad_id"])

    def answer(self, images: Sequence[str | Path | None], questions: Sequence[str],
               max_new_tokens: int | None = None) -> list[str]:
        """The answer to each question about its image (None: a question without one). A question about an image
        that does not place it (``<image>``) gets it first, on its own line, as LLaVA's data puts it."""
        if len(images) != len(questions):
            raise ConfigError(f"{len(images)} image(s) for {len(questions)} question(s)", "give one image per question")
        prompts = [self.chat.prompt_for(f"{IMAGE_PLACEHOLDER}\n{q}" if image is not None and IMAGE_PLACEHOLDER not in q
                                        else q) for image, q in zip(images, questions, strict=True)]
        pixels = [self.image.load_array(Path(image)) for image in images if image is not None]
        batch = self.image.normalise_array(np.stack(pixels)) if pixels else None
        answers = self.generate(prompts, batch, max_new_tokens)
        return self.tokenizer.batch_decode(answers, skip_special_tokens=True)

    def generate(self, prompts: list[list[int]], images: np.ndarray | None, max_new_tokens: int | None = None
                 ) -> list[list[int]]:
        """Greedy token ids after each prompt (ids with ``IMAGE_ID`` once where its image goes; ``images``: one
        normalised image per prompt that has one, in order), cut before the stop token."""
        limit = int(max_new_tokens or self.spec["max_new_tokens"])
        rows, row_visual = self.rows(prompts, images)
        width = int(self.spec["width"])
        tokens: list[list[int]] = [[] for _ in rows]
        done = np.zeros(len(rows), dtype=bool)
        for _ in range(limit):
            logits = self.next_logits(rows, row_visual, width)
            token = logits.argmax(-1)
            for b, t in enumerate(token.tolist()):
                tokens[b].append(t)
                rows[b].append(t)
            done |= token == self.stop_id
            if done.all():
                break
        return [row[: row.index(self.stop_id)] if self.stop_id in row else row for row in tokens]

    def rows(self, prompts: list[list[int]], images: np.ndarray | None) -> tuple[list[list[int]], list]:
        """Each prompt with its image's sentinel expanded to one ``IMAGE_ID`` per visual token, and per prompt
        (sentinel position, visual tokens [N, d]) or None."""
        visual = self.vision.run([VISION_OUTPUT], {VISION_INPUT: images.astype(np.float32)})[0] \
            if images is not None and len(images) else None
        rows, row_visual, image_row = [], [], 0
        for ids in prompts:
            if IMAGE_ID not in ids:
                rows.append(list(ids))
                row_visual.append(None)
                continue
            if visual is None or image_row >= len(visual):
                raise ConfigError("a prompt places an image (<image>) that was not given", "give its image")
            p, tokens = ids.index(IMAGE_ID), visual[image_row]
            image_row += 1
            rows.append(ids[:p] + [IMAGE_ID] * len(tokens) + ids[p + 1:])
            row_visual.append((p, tokens))
        return rows, row_visual

    def next_logits(self, rows: list[list[int]], row_visual: list, width: int) -> np.ndarray:
        """[B, V] logits of the next token after each row, the rows padded on the left."""
        length = max(len(r) for r in rows)
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        embeds = np.zeros((len(rows), length, width), dtype=np.float32)
        for b, row in enumerate(rows):
            start = length - len(row)
            ids[b, start:], mask[b, start:] = row, 1
            if row_visual[b] is not None:
                p, visual = row_visual[b]
                embeds[b, start + p: start + p + len(visual)] = visual
        feed = {"input_ids": ids, "image_embeds": embeds, "attention_mask": mask}
        return self.decoder.run([DECODER_OUTPUT], feed)[0]


def answer_file(model: str | Path, inputs: str | Path, providers: list[str] | None = None
                ) -> tuple[OnnxVisionLanguageModel, list[tuple[str, str]]]:
    """``zoo infer model=DIR inputs=FILE.json``: the loaded model and (record id, answer) per record of a LLaVA
    JSON file (each record's image, relative to the file's folder, and its first human turn; gpt turns, if any,
    are ignored)."""
    vlm = OnnxVisionLanguageModel(model, providers=providers)
    path = Path(inputs)
    records = read_instructions(path, path.parent, answered=False)
    answers = vlm.answer([record.image for record in records], [record.turns[0][0] for record in records])
    return vlm, [(record.id, answer) for record, answer in zip(records, answers, strict=True)]
