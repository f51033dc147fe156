"""A visual-QA run's student (a ``zoo.archs.vlm.VisionLanguageModel``, dense or upcycled) -> a checked ONNX folder.

    zoo export run=runs/llava_mod_scene_vqa/<run-id> [out=DIR]     (default out: <run>/export/vlm)
    OnnxVisionLanguageModel(DIR).answer(["scene.png"], ["Is there a bag in the picture?"])   (zoo.export.vlm_runtime)

Two graphs (their inputs and outputs in ``zoo.export.vlm_runtime``): ``vision.onnx``, the frozen tower and the
projector; ``decoder.onnx``, the token embeddings, the splice of the visual tokens, the positions and the whole
decoder to the next-token logits. Greedy decoding reruns the decoder without a KV cache (the runtime's docstring says
why). A mixture-of-experts layer is exported by ``SparseMoE.forward_every_expert``: every expert on every token,
weighted by the router's combine weights (0 for experts not chosen), which equals the sparse forward as long as
capacity never drops a route (``SparseMoE.never_drops``: top_k x eval_capacity_factor >= experts, true of the
released setting, 2 x 2.0 >= 4). Where capacity can drop routes, which ones depends on every token of the batch, so
no per-sequence graph computes it faithfully: the export is refused in one line, never replaced by a dense FFN.

Parity (ExportCheckError on failure, nothing written), over the run's whole test split in its evaluation batches:
the next-token logits of every prompt from onnxruntime against eager PyTorch (fp32, eval; max |difference| within
the profile's tolerance), and the greedy answers of the runtime against ``VisionLanguageModel.generate`` (sparse
routing, KV cache): every answer must be the same tokens. PyTorch's answer accuracy must match the record's
``test/acc`` (``zoo.export.parity.check_against_record``). The folder: ``vision.onnx``, ``decoder.onnx``,
``tokenizer/``, ``vlm.json``, ``card.yaml``, ``student.safetensors``, ``export.json``.
"""

import copy
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.atomic import atomic_folder, write_json
from zoo.data.llava_format import IMAGE_ID
from zoo.errors import ConfigError
from zoo.export.errors import ExportCheckError, ExportError
from zoo.export.graph import checked_graph, graph_facts, graph_io
from zoo.export.parity import check_against_record
from zoo.export.profiles import load_profile
from zoo.export.report import ExportResult, export_report, is_export_folder, run_source
from zoo.export.vlm_runtime import (
    DECODER,
    DECODER_INPUTS,
    DECODER_OUTPUT,
    SPEC_FILE,
    VISION,
    VISION_INPUT,
    VISION_OUTPUT,
    OnnxVisionLanguageModel,
)

SCHEMA = 1


class VisionGraph(nn.Module):
    """Normalised images -> projected visual tokens."""

    def __init__(self, model):
        super().__init__()
        self.vision, self.projector = model.vision, model.projector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.vision(images))


class DecoderGraph(nn.Module):
    """(input_ids with IMAGE_ID at visual positions, image_embeds, attention_mask) -> last position's logits; the
    embeddings of padding are zeros and positions count real tokens only, as ``VisionLanguageModel.generate``."""

    def __init__(self, model):
        super().__init__()
        self.lm = model.lm

    def forward(self, input_ids: torch.Tensor, image_embeds: torch.Tensor, attention_mask: torch.Tensor):
        text = self.lm.get_input_embeddings()(input_ids.clamp_min(0))
        embeds = torch.where((input_ids == IMAGE_ID)[..., None], image_embeds, text)
        embeds = embeds * attention_mask[..., None].to(embeds.dtype)
        positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        out = self.lm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions, use_cache=False,
                      logits_to_keep=1)
        return out.logits[:, -1]


class EveryExpert(nn.Module):
    """A ``SparseMoE`` as its graph-friendly equal (``forward_every_expert``)."""

    def __init__(self, moe):
        super().__init__()
        self.moe = moe

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.moe.forward_every_expert(hidden)


def exportable_copy(student) -> nn.Module:
    """A copy of ``student`` (eval, CPU) whose MoE layers compute by ``forward_every_expert``; refused in one line
    where capacity can drop routes (see the module docstring)."""
    from zoo.archs.moe import SparseMoE

    model = copy.deepcopy(student).cpu().eval()
    for i, layer in enumerate(model.decoder_layers()):
        if isinstance(layer.mlp, SparseMoE):
            moe = layer.mlp
            if not moe.never_drops():
                raise ConfigError(
                    f"decoder layer {i}'s experts can drop tokens past their capacity (top_k {moe.top_k} x "
                    f"eval_capacity_factor {moe.eval_capacity_factor} < {moe.num_experts} experts): which ones "
                    "depends on the whole batch, which no exported graph reproduces, so it is not exported",
                    "upcycle with eval_capacity_factor >= num_experts / top_k (the released setting: 2.0 with 4 "
                    "experts, top-2)")
            layer.mlp = EveryExpert(moe)
    return model


def to_onnx(module: nn.Module, args: tuple, path: Path, inputs: tuple[str, ...], output: str, dynamic: dict,
            opset: int) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter chatter
            torch.onnx.export(module, args, str(path), dynamo=True, input_names=list(inputs), output_names=[output],
                              dynamic_shapes=dynamic, opset_version=opset, external_data=False, verbose=False)
    except Exception as err:  # torch.export and onnxscript errors share no base class
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"torch.onnx.export failed for {path.name}: {first}") from err


def export_graphs(model, folder: Path, opset: int, image_size: int) -> dict[str, Any]:
    """vision.onnx and decoder.onnx of ``model`` (an ``exportable_copy``) in ``folder``; their graph facts."""
    # torch.export specialises a dimension whose example size is 1: trace with 2 rows of > 1 token.
    images = torch.zeros(2, 3, image_size, image_size)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    to_onnx(VisionGraph(model), (images,), folder / VISION, (VISION_INPUT,), VISION_OUTPUT,
            {VISION_INPUT: {0: batch}}, opset)
    width = int(model.lm.config.hidden_size)
    ids = torch.tensor([[1, IMAGE_ID, IMAGE_ID, 2, 3], [0, 0, 4, 5, 6]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    args = (ids, torch.zeros(2, 5, width), mask)
    to_onnx(DecoderGraph(model), args, folder / DECODER, DECODER_INPUTS, DECODER_OUTPUT,
            {name: {0: batch, 1: length} for name in DECODER_INPUTS}, opset)
    facts = {}
    for name, inputs, output in ((VISION, (VISION_INPUT,), VISION_OUTPUT), (DECODER, DECODER_INPUTS, DECODER_OUTPUT)):
        proto = checked_graph(folder / name)
        facts[name] = graph_facts(proto)
        found_in, found_out = ([value.name for value in values] for values in graph_io(proto))
        if found_in != list(inputs) or found_out != [output]:
            raise ExportCheckError(f"{name}: expected {list(inputs)} -> ['{output}'], got {found_in} -> {found_out}")
        if facts[name]["opset"] != opset:
            raise ExportCheckError(f"{name} has opset {facts[name]['opset']}, asked for {opset}")
    return facts


def prefill_logits(student, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    """Eager next-token logits after each prompt, as ``generate``'s first step computes them."""
    embeds, mask, _ = student.splice({k: v for k, v in inputs.items() if k != "labels"}, left_pad=True)
    mask = mask.long()
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = student.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False,
                     logits_to_keep=1)
    return out.logits[:, -1].float().numpy()


@torch.no_grad()
def check_parity(student, runtime: OnnxVisionLanguageModel, loader, max_new_tokens: int, max_abs_diff: float
                 ) -> dict[str, Any]:
    """onnxruntime against eager PyTorch over every batch of ``loader`` (``PromptSet`` batches): next-token logits
    and greedy answers (see the module docstring)."""
    from zoo.metrics.visual_qa import score

    student = student.eval()
    width = int(runtime.spec["width"])
    n = differing = nonfinite = 0
    max_diff, first_difference = 0.0, None
    torch_answers, onnx_answers, references = [], [], []
    for batch in loader:
        inputs = batch["inputs"]
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"],
                                                                 strict=True)]
        has_image = (inputs["input_ids"] == IMAGE_ID).any(dim=1)
        images = inputs["images"][has_image].numpy() if has_image.any() else None
        ref = prefill_logits(student, inputs)
        rows, row_visual = runtime.rows(prompts, images)
        got = runtime.next_logits(rows, row_visual, width)
        finite = np.isfinite(got)
        nonfinite += int((~finite).sum())
        max_diff = max(max_diff, float(np.abs(np.where(finite, got, 0.0) - ref).max()))
        eager, _ = student.generate(inputs, max_new_tokens)
        exported = runtime.generate(prompts, images, max_new_tokens)
        for b, (a, o) in enumerate(zip(eager, exported, strict=True)):
            if a != o:
                differing += 1
                first_difference = first_difference or (batch["answers"][b], a, o)
        torch_answers += runtime.tokenizer.batch_decode(eager, skip_special_tokens=True)
        onnx_answers += runtime.tokenizer.batch_decode(exported, skip_special_tokens=True)
        references += batch["answers"]
        n += len(prompts)
    if n == 0:
        raise ExportCheckError("no test questions to check the export against")
    result = {"samples": n, "providers": runtime.decoder.get_providers(), "labels": "answers",
              "max_abs_diff": max_diff, "max_abs_diff_tolerance": max_abs_diff, "nonfinite_outputs": nonfinite,
              "answers_differing": differing, "metric": "answer_acc",
              "metric_torch": score(torch_answers, references)["acc"],
              "metric_onnx": score(onnx_answers, references)["acc"]}
    problems = []
    if nonfinite:
        problems.append(f"{nonfinite} ONNX logit(s) are NaN or infinite")
    if not max_diff <= max_abs_diff:  # written so that a NaN fails
        problems.append(f"next-token logits differ by up to {max_diff:.3g} (tolerance {max_abs_diff:.3g})")
    if differing:
        reference, a, o = first_difference
        problems.append(f"{differing} greedy answer(s) differ from PyTorch's (first: ids {o} against {a}, "
                        f"reference {reference!r})")
    if problems:
        raise ExportCheckError(f"export check failed ({n} test questions): " + "; ".join(problems),
                               "the ONNX graphs do not compute what the PyTorch student computes; nothing was written")
    return {**result, "passed": True}


def export_vlm_run(loaded, out: Path | None = None, profile: str | None = None,
                   say: Callable[[str], None] = print) -> ExportResult:
    """Export the student of a finished visual-QA run (``zoo.runs.load_run``), checked on its test split; ``out``
    defaults to ``<run>/export/vlm``."""
    from zoo.cards import InputSpec, MetricEntry
    from zoo.evaluation import smoke_limit
    from zoo.export.classifier import student_card, write_card

    record, cfg, datamodule, run_dir = loaded.record, loaded.cfg, loaded.datamodule, loaded.run_dir
    if "test" not in datamodule.splits:
        raise ConfigError("the data has no 'test' split to check the export on",
                          f"its splits: {', '.join(datamodule.splits) or 'none'}")
    tolerance = load_profile(profile or "default")
    model = exportable_copy(loaded.student)
    image = datamodule.images.spec
    spec = {"schema": SCHEMA, "arch": cfg.student.arch, "tokenizer": datamodule.vocabulary,
            "image": {"size": image.size, "mean": list(image.mean), "std": list(image.std)},
            "visual_tokens": int(model.vision.tokens), "width": int(model.lm.config.hidden_size),
            "image_id": IMAGE_ID, "stop_id": model.stop_id, "pad_id": model.pad_id,
            "max_length": int(datamodule.encoder.max_length), "max_new_tokens": int(datamodule.max_new_tokens),
            "experts": [{"layer": i, "num_experts": layer.mlp.moe.num_experts, "top_k": layer.mlp.moe.top_k}
                        for i, layer in enumerate(model.decoder_layers()) if isinstance(layer.mlp, EveryExpert)],
            "decoding": "greedy; the decoder reruns over the whole sequence each step (no KV cache)"}
    source = run_source(loaded)
    out = Path(out or run_dir / "export" / "vlm").expanduser().resolve()
    say(f"exporting the vision-language student {cfg.student.arch} of {record.task}/{record.run_id} ...")
    started = time.perf_counter()
    with atomic_folder(out, is_export_folder, "an export folder", "pass out=<a new folder>") as tmp:
        graphs = export_graphs(model, tmp, tolerance.opset, image.size)
        exported = time.perf_counter()
        datamodule.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        write_json(tmp / SPEC_FILE, spec)
        runtime = OnnxVisionLanguageModel(tmp, verify=False)
        parity = {"split": "test", **check_parity(loaded.student.cpu(), runtime, datamodule.prompt_loader("test"),
                                                  int(datamodule.max_new_tokens), tolerance.max_abs_diff)}
        parity.update(check_against_record(parity, record, datamodule.fingerprint, smoke_limit(cfg) is not None))
        checked = time.perf_counter()
        shutil.copyfile(run_dir / "student.safetensors", tmp / "student.safetensors")
        card = student_card(loaded, InputSpec(shape=[3, image.size, image.size], mean=list(image.mean),
                                              std=list(image.std), tokenizer=datamodule.vocabulary))
        card.metrics = [MetricEntry("test/acc", float(parity["metric_onnx"]),
                                    f"export:onnxruntime greedy answers on {parity['samples']} test questions")]
        files = write_card(card, tmp, out, (VISION, DECODER, SPEC_FILE, "tokenizer"))
        report = export_report(kind="vision-language", card=card.name, source=source, graph=graphs, parity=parity,
                               files=files, exporter="dynamo", profile=tolerance.to_dict(),
                               seconds={"export": round(exported - started, 3), "check": round(checked - exported, 3)})
        write_json(tmp / "export.json", report)
    say(f"checked on {parity['samples']} test questions: max |next-token logit diff| {parity['max_abs_diff']:.2e} <= "
        f"{parity['max_abs_diff_tolerance']:.0e}, every greedy answer the same; answer accuracy "
        f"{parity['metric_onnx']:.4f} (ONNX) = {parity['metric_torch']:.4f} (PyTorch)")
    say(f"exported -> {out}")
    return ExportResult(out, report)
