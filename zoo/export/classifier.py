"""An image classifier -> a checked ONNX folder: model.onnx, preprocess.json, card.yaml, student.safetensors,
export.json (the ``image_classification`` kind's exporter).

    zoo export run=runs/kd_digits/<run-id> [profile=default] [out=DIR]   (default out: <run>/export/<profile>)

Steps: rebuild the run's student from config.yaml + student.safetensors;
``torch.onnx.export``; ``onnx.checker`` (full check) plus the profile's opset,
IO names, dtypes and batch axis; onnxruntime vs PyTorch over the run's whole
test split (``zoo.export.parity``: logits within ``max_abs_diff``, top-1
accuracy within ``metric_abs_diff``). Everything is written into a hidden temp
folder beside ``out`` and renamed into place only after every check passed, so
a folder named ``out`` is always a complete, checked export; a failure raises
ExportError/ExportCheckError and leaves nothing behind. ``export_card`` does the same for a published model card's
checkpoint, checked on its task's test split, and ``export_any`` for any classifier module on random inputs.

Exporter: torch's dynamo exporter (``torch.export`` + onnxscript), the default
since torch 2.9. On torch 2.14 both it and the legacy TorchScript exporter
(``dynamo=False``) export timm's resnet18 / mobilenetv3 and the zoo's MLPs and
conv nets with the same parity (max |diff| ~1e-7), but the legacy one warns that
it will be removed, so a profile built on it would break on a torch upgrade. The
dynamo exporter only has opset >= 18 implementations: asked for 17 it
down-converts, which works for the MLPs but fails for conv nets and resnet18,
where it keeps 18 with only a log line; so the default profile asks for 18, and
the opset check here refuses any model whose opset is not the profile's. It is
also slower (1-4 s vs 0.05-1.5 s for these nets). A model torch.export cannot
capture (data-dependent control flow) can use ``exporter: torchscript``.
"""

import copy
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from zoo.atomic import atomic_folder, write_json
from zoo.cards import InputSpec, MetricEntry, ModelCard, WeightsSpec, parse_card
from zoo.errors import ConfigError
from zoo.export.errors import ExportCheckError, ExportError
from zoo.export.graph import checked_graph, graph_facts, graph_io
from zoo.export.parity import check_against_record, check_parity
from zoo.export.profiles import ExportProfile, load_profile
from zoo.export.report import ExportResult, export_report, file_entries, is_export_folder, run_source

INPUT_NAME, OUTPUT_NAME = "inputs", "logits"


def to_onnx(model: nn.Module, path: Path, input_shape: tuple[int, ...], profile: ExportProfile) -> None:
    """``torch.onnx.export`` of ``model`` as the profile says (see the module docstring for the exporter choice)."""
    model = copy.deepcopy(model).eval()  # fp16 casts it; the caller's module stays as it is
    # torch.export specialises a dimension whose example size is 1, so a dynamic batch is traced with 2 rows.
    rows = 2 if profile.dynamic_batch else 1
    example = torch.randn(rows, *input_shape, generator=torch.Generator().manual_seed(0))
    if profile.precision == "fp16":
        model, example = model.half(), example.half()
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": profile.opset}
    try:
        if profile.exporter == "dynamo":
            dynamic = ({0: torch.export.Dim("batch")},) if profile.dynamic_batch else None
            # external_data=False: one self-contained file (students are far below protobuf's 2 GB limit).
            torch.onnx.export(model, (example,), str(path), dynamo=True, dynamic_shapes=dynamic,
                              external_data=False, verbose=False, **names)
        else:
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if profile.dynamic_batch else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning))  # "legacy exporter" notice
                torch.onnx.export(model, (example,), str(path), dynamo=False, dynamic_axes=axes, **names)
    except Exception as err:  # torch.export, onnxscript and TorchScript errors share no base class
        raise ExportError(f"torch.onnx.export ({profile.exporter}) failed for {type(model).__name__}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}",
                          "try the other exporter (exporter: torchscript | dynamo in the profile)") from err


def check_graph(path: Path, profile: ExportProfile) -> dict[str, Any]:
    """onnx.checker (full), then what the runtime relies on: opset, IO names and types, the batch axis."""
    import onnx

    proto = checked_graph(path)
    facts = graph_facts(proto)
    opset = facts["opset"]
    if opset != profile.opset:
        raise ExportCheckError(f"the exported model has opset {opset}, profile '{profile.name}' asks for "
                               f"{profile.opset}", "the dynamo exporter emits opset >= 18: set opset: 18 or more, "
                                                   "or exporter: torchscript for older opsets")
    inputs, outputs = graph_io(proto)
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise ExportCheckError(f"expected one input '{INPUT_NAME}' and one output '{OUTPUT_NAME}', got "
                               f"{[i.name for i in inputs]} -> {[o.name for o in outputs]}")
    want = onnx.TensorProto.FLOAT16 if profile.precision == "fp16" else onnx.TensorProto.FLOAT
    for value in inputs + outputs:
        if value.type.tensor_type.elem_type != want:
            name = onnx.TensorProto.DataType.Name
            raise ExportCheckError(f"'{value.name}' has ONNX type {name(value.type.tensor_type.elem_type)}, "
                                   f"profile '{profile.name}' ({profile.precision}) wants {name(want)}")
    batch = inputs[0].type.tensor_type.shape.dim[0]
    if profile.dynamic_batch != bool(batch.dim_param):
        raise ExportCheckError(f"the batch axis is {'dynamic' if batch.dim_param else 'static'}, profile "
                               f"'{profile.name}' asks for {'dynamic' if profile.dynamic_batch else 'static'}")
    return {**facts, "batch_axis": batch.dim_param or batch.dim_value}


def export_module(model: nn.Module, out: Path, profile: ExportProfile | str, *, input_shape: tuple[int, ...],
                  batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], spec: dict[str, Any],
                  card: ModelCard, weights: Path | None = None, source: dict[str, Any] | None = None,
                  split: str = "test", verify: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                  ) -> ExportResult:
    """Export any classifier ``model`` to the folder ``out``, checked on ``batches``; published atomically.

    ``spec`` is the preprocess spec (``zoo.export.preprocess``), ``card`` the model card whose weights
    entry is filled here, ``weights`` a safetensors file to ship as is (else the model's state is saved),
    ``verify`` a further check of the parity numbers (raising stops the export; its fields join the report).
    """
    from zoo.weights import save_weights

    profile = load_profile(profile) if isinstance(profile, str) else profile
    if profile.dynamic_sequence:
        raise ConfigError(f"profile '{profile.name}' asks for a dynamic sequence axis; image classifiers have none",
                          "use a profile with dynamic_axes.sequence: false")
    out = Path(out).expanduser().resolve()
    started = time.perf_counter()
    with atomic_folder(out, is_export_folder, "an export folder", "pass out=<a new folder>") as tmp:
        to_onnx(model, tmp / "model.onnx", tuple(input_shape), profile)
        exported = time.perf_counter()
        graph = check_graph(tmp / "model.onnx", profile)
        parity = {"split": split, **check_parity(model, tmp / "model.onnx", batches, profile)}
        if verify is not None:
            parity.update(verify(parity))
        checked = time.perf_counter()
        dtype = "float16" if profile.precision == "fp16" else "float32"
        spec = {**spec, "input": {**spec["input"], "dtype": dtype}, "output": {**spec["output"], "dtype": dtype}}
        write_json(tmp / "preprocess.json", spec)
        if weights is not None:
            shutil.copyfile(weights, tmp / "student.safetensors")
        else:
            save_weights(model, tmp / "student.safetensors")
        card = copy.deepcopy(card)
        card.metrics = measured_metrics(parity, f"profile {profile.name}")
        files = write_card(card, tmp, out, ("model.onnx", "preprocess.json"))
        report = export_report(card=card.name, source=source or {}, profile=profile.to_dict(), graph=graph,
                               parity=parity, files=files, seconds={"export": round(exported - started, 3),
                                                                    "check": round(checked - exported, 3)})
        write_json(tmp / "export.json", report)
    return ExportResult(out, report)


def write_card(card: ModelCard, tmp: Path, out: Path, shipped: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Point ``card`` at the staged ``student.safetensors`` (as it will lie in ``out``), check that it reads back
    valid and write it to ``tmp/card.yaml``; returns sha256 and size of the ``shipped`` files, the card and the
    weights, for export.json."""
    from zoo.weights import sha256_file

    card.weights = WeightsSpec(urls=[(out / "student.safetensors").as_uri()],
                               sha256=sha256_file(tmp / "student.safetensors"),
                               size=(tmp / "student.safetensors").stat().st_size, format="safetensors")
    parse_card(yaml.safe_load(card.to_yaml()), str(out / "card.yaml"))  # the card must read back valid
    (tmp / "card.yaml").write_text(card.to_yaml(), encoding="utf-8")
    return file_entries(tmp, (*shipped, "card.yaml", "student.safetensors"))


def measured_metrics(parity: dict[str, Any], setting: str) -> list[MetricEntry]:
    """The metrics an export's card quotes: the top-1 accuracy its check measured from the ONNX graph on the held-out
    split (``setting`` says how it was exported), never the run record's, which describe weights that may have
    changed since (export.json keeps them, as ``source.record_metrics``). Inputs without labels (``export_any``'s
    random ones) measure agreement with PyTorch, not accuracy: no metric then."""
    if parity.get("labels") != "targets" or parity.get("metric") != "top1_acc":
        return []
    return [MetricEntry(f"{parity['split']}/acc", float(parity["metric_onnx"]),
                        f"export:onnx top-1 on {parity['samples']} {parity['split']} samples, {setting}")]


def run_card(loaded) -> tuple[ModelCard, dict[str, Any]]:
    """The model card of a finished run's student (weights still pending), and its preprocess spec."""
    from zoo.export.preprocess import spec_for_datamodule

    spec = spec_for_datamodule(loaded.datamodule, "float32")
    card = student_card(loaded, InputSpec(shape=list(loaded.datamodule.input_shape), mean=spec["mean"],
                                          std=spec["std"]))
    return card, spec


def student_card(loaded, input_spec: InputSpec) -> ModelCard:
    """The model card of a finished run's student, its metrics from the record (``zoo publish``; an export replaces
    them by what it measured, ``measured_metrics``); weights still pending."""
    record, cfg = loaded.record, loaded.cfg
    return ModelCard(
        name=f"{cfg.student.arch}.{cfg.task}-{record.run_id}", arch=cfg.student.arch, task=cfg.task,
        num_classes=loaded.datamodule.num_classes, input=input_spec,
        weights=WeightsSpec(urls=["file:///pending"]),  # filled once the weights' place is known
        metrics=[MetricEntry(name, float(value), f"record:{record.run_id}")
                 for name, value in sorted(record.metrics.items())],
        teacher=_teachers(record), license=None, paper=None)


def export_run(loaded, out: str | Path | None = None, profile: str = "default",
               say: Callable[[str], None] = print) -> ExportResult:
    """Export the student of a finished classification run (``zoo.runs.load_run``); ``out`` defaults to
    ``<run>/export/<profile>``."""
    run_dir = loaded.run_dir
    profile_ = load_profile(profile)
    record, cfg, datamodule = loaded.record, loaded.cfg, loaded.datamodule
    card, spec = run_card(loaded)
    source = run_source(loaded)
    target = Path(out) if out else run_dir / "export" / profile_.name
    say(f"exporting {cfg.student.arch} of {record.task}/{record.run_id} with profile '{profile_.name}' ...")
    result = export_module(loaded.student, target, profile_, input_shape=datamodule.input_shape,
                           batches=held_out_batches(datamodule, "test"), spec=spec, card=card,
                           weights=run_dir / "student.safetensors", source=source,
                           verify=lambda parity: check_against_record(parity, record, datamodule.fingerprint))
    say_parity(result, say)
    return result


def export_any(model: nn.Module, out: str | Path, *, arch: str, input_shape: tuple[int, ...], num_classes: int,
               profile: str = "default", tag: str = "untrained", samples: int = 16, seed: int = 0) -> ExportResult:
    """Export an arbitrary classifier module (no run, no data), e.g. a random-init timm resnet18 for the bench.

    Checked on ``samples`` seeded random inputs, the metric being top-1 agreement with PyTorch's own argmax.
    ``arch`` should be an ARCHS key, so that the folder's card can rebuild the PyTorch model.
    """
    from zoo.export.preprocess import make_spec

    inputs = torch.randn(samples, *input_shape, generator=torch.Generator().manual_seed(seed))
    batches = [(inputs[i:i + 8], None) for i in range(0, samples, 8)]
    card = ModelCard(name=f"{arch}.{tag}", arch=arch, task="none", num_classes=num_classes,
                     input=InputSpec(shape=list(input_shape)), weights=WeightsSpec(urls=["file:///pending"]))
    return export_module(model, Path(out), profile, input_shape=tuple(input_shape), batches=batches,
                         spec=make_spec(tuple(input_shape), num_classes, "float32"), card=card,
                         source={"kind": "module", "arch": arch, "inputs": f"{samples} seeded random"},
                         split="random")


def held_out_batches(datamodule, split: str = "test") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) over a whole split, in the loader's fixed order."""
    if split not in datamodule.splits:
        raise ConfigError(f"the data has no '{split}' split to check the export on",
                          f"its splits: {', '.join(datamodule.splits)}")
    for batch in datamodule.eval_loader(split):
        yield batch["inputs"], batch["targets"]


def export_card(name: str, out: str | Path | None, profile: str, say: Callable[[str], None] = print):
    """Export a published model card's checkpoint, checked on its task's test split."""
    from zoo.catalog import export_dir, get_card
    from zoo.config import compose
    from zoo.export.preprocess import spec_for_datamodule
    from zoo.models_api import create_model
    from zoo.registry import DATASETS

    card = get_card(name)
    student = create_model(name, pretrained=True).eval()  # zoo.hub: cached, sha256-verified download
    cfg = compose(card.task)
    datamodule = DATASETS.get(cfg.data.name)(cfg.data)
    if datamodule.num_classes != card.num_classes or list(datamodule.input_shape) != list(card.input.shape):
        raise ConfigError(f"card '{name}' ({card.num_classes} classes, input {card.input.shape}) does not fit "
                          f"task {card.task}'s data ({datamodule.num_classes} classes, input "
                          f"{list(datamodule.input_shape)})")
    spec = spec_for_datamodule(datamodule, "float32")
    target = Path(out) if out else export_dir(name, profile)
    say(f"exporting model {name} with profile '{profile}' ...")
    result = export_module(student, target, profile, input_shape=tuple(card.input.shape),
                           batches=held_out_batches(datamodule, "test"), spec=spec, card=copy.deepcopy(card),
                           source={"kind": "card", "card": name, "task": card.task,
                                   "data": {"name": datamodule.name, "fingerprint": datamodule.fingerprint}})
    say_parity(result, say)
    return result


def say_parity(result: ExportResult, say: Callable[[str], None]) -> None:
    p = result.report["parity"]
    say(f"checked on {p['samples']} {p['split']} samples ({', '.join(p['providers'][:1])}): max |logit diff| "
        f"{p['max_abs_diff']:.2e} <= {p['max_abs_diff_tolerance']:.0e}, top-1 {p['metric_onnx']:.4f} (onnx) vs "
        f"{p['metric_torch']:.4f} (torch)")
    say(f"exported -> {result.folder}")


def _teachers(record) -> str | list[str] | None:
    names = [t.name for t in record.teachers]
    return None if not names else names[0] if len(names) == 1 else names
