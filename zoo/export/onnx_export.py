"""A student -> a checked ONNX folder: model.onnx, preprocess.json, card.yaml, student.safetensors, export.json.

    zoo export run=runs/kd_digits/<run-id> [profile=default] [out=DIR]   (default out: <run>/export/<profile>)

Steps: rebuild the run's student from config.yaml + student.safetensors;
``torch.onnx.export``; ``onnx.checker`` (full check) plus the profile's opset,
IO names, dtypes and batch axis; onnxruntime vs PyTorch over the run's whole
test split (``zoo.export.parity``: logits within ``max_abs_diff``, top-1
accuracy within ``metric_abs_diff``). Everything is written into a hidden temp
folder beside ``out`` and renamed into place only after every check passed, so
a folder named ``out`` is always a complete, checked export; a failure raises
ExportError/ExportCheckError and leaves nothing behind.

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

import contextlib
import copy
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from zoo.cards import InputSpec, MetricEntry, ModelCard, WeightsSpec, parse_card
from zoo.errors import ConfigError
from zoo.export.errors import ExportCheckError, ExportError
from zoo.export.parity import check_parity
from zoo.export.profiles import ExportProfile, load_profile
from zoo.records import hardware, now_iso, package_versions

INPUT_NAME, OUTPUT_NAME = "inputs", "logits"
SCHEMA = 1


@dataclass
class ExportResult:
    folder: Path
    report: dict[str, Any]  # the content of export.json


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

    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportCheckError(f"onnx.checker rejects the exported model: {str(err).strip().splitlines()[0]}") from err
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset != profile.opset:
        raise ExportCheckError(f"the exported model has opset {opset}, profile '{profile.name}' asks for "
                               f"{profile.opset}", "the dynamo exporter emits opset >= 18: set opset: 18 or more, "
                                                   "or exporter: torchscript for older opsets")
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    outputs = list(proto.graph.output)
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
    return {"opset": opset, "ir_version": proto.ir_version, "producer": f"{proto.producer_name} "
            f"{proto.producer_version}", "nodes": len(proto.graph.node),
            "op_types": sorted({n.op_type for n in proto.graph.node}),
            "batch_axis": batch.dim_param or batch.dim_value}


def export_module(model: nn.Module, out: Path, profile: ExportProfile | str, *, input_shape: tuple[int, ...],
                  batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]], spec: dict[str, Any],
                  card: ModelCard, weights: Path | None = None, source: dict[str, Any] | None = None,
                  split: str = "test") -> ExportResult:
    """Export any classifier ``model`` to the folder ``out``, checked on ``batches``; published atomically.

    ``spec`` is the preprocess spec (``zoo.export.preprocess``), ``card`` the model card whose weights
    entry is filled here, ``weights`` a safetensors file to ship as is (else the model's state is saved).
    """
    from zoo.weights import save_weights, sha256_file

    profile = load_profile(profile) if isinstance(profile, str) else profile
    if profile.dynamic_sequence:
        raise ConfigError(f"profile '{profile.name}' asks for a dynamic sequence axis; image classifiers have none",
                          "use a profile with dynamic_axes.sequence: false")
    out = Path(out).expanduser().resolve()
    started = time.perf_counter()
    with staged_export(out) as tmp:
        to_onnx(model, tmp / "model.onnx", tuple(input_shape), profile)
        exported = time.perf_counter()
        graph = check_graph(tmp / "model.onnx", profile)
        parity = {"split": split, **check_parity(model, tmp / "model.onnx", batches, profile)}
        checked = time.perf_counter()
        dtype = "float16" if profile.precision == "fp16" else "float32"
        spec = {**spec, "input": {**spec["input"], "dtype": dtype}, "output": {**spec["output"], "dtype": dtype}}
        _write_json(tmp / "preprocess.json", spec)
        if weights is not None:
            shutil.copyfile(weights, tmp / "student.safetensors")
        else:
            save_weights(model, tmp / "student.safetensors")
        card = copy.deepcopy(card)
        card.weights = WeightsSpec(urls=[(out / "student.safetensors").as_uri()],
                                   sha256=sha256_file(tmp / "student.safetensors"),
                                   size=(tmp / "student.safetensors").stat().st_size, format="safetensors")
        parse_card(yaml.safe_load(card.to_yaml()), str(out / "card.yaml"))  # the card must read back valid
        (tmp / "card.yaml").write_text(card.to_yaml(), encoding="utf-8")
        files = {name: {"sha256": sha256_file(tmp / name), "size": (tmp / name).stat().st_size}
                 for name in ("model.onnx", "preprocess.json", "card.yaml", "student.safetensors")}
        report = {"schema": SCHEMA, "created": now_iso(), "card": card.name, "source": source or {},
                  "profile": profile.to_dict(), "graph": graph, "parity": parity, "files": files,
                  "seconds": {"export": round(exported - started, 3), "check": round(checked - exported, 3)},
                  "versions": package_versions(), "hardware": hardware()}
        _write_json(tmp / "export.json", report)
    return ExportResult(out, report)


def run_card(loaded) -> tuple[ModelCard, dict[str, Any]]:
    """The model card of a finished run's student (weights still pending), and its preprocess spec."""
    from zoo.export.preprocess import spec_for_datamodule

    record, cfg, datamodule = loaded.record, loaded.cfg, loaded.datamodule
    card = ModelCard(
        name=f"{cfg.student.arch}.{cfg.task}-{record.run_id}", arch=cfg.student.arch, task=cfg.task,
        num_classes=datamodule.num_classes, input=InputSpec(shape=list(datamodule.input_shape)),
        weights=WeightsSpec(urls=["file:///pending"]),  # filled once the weights' place is known
        metrics=[MetricEntry(name, float(value), f"record:{record.run_id}")
                 for name, value in sorted(record.metrics.items())],
        teacher=_teachers(record), license=None, paper=None)
    spec = spec_for_datamodule(datamodule, "float32")
    card.input.mean, card.input.std = spec["mean"], spec["std"]
    return card, spec


def export_run(run: str | Path, out: str | Path | None = None, profile: str = "default",
               say: Callable[[str], None] = print) -> ExportResult:
    """Export the student of a finished run folder (config.yaml, student.safetensors, record.json)."""
    from zoo.export.sources import held_out_batches, load_run

    run_dir = Path(run)
    loaded = load_run(run_dir)
    if hasattr(loaded.datamodule, "sources"):  # a retrieval run: its query encoder (SPLADE or dense)
        return export_retrieval_run(loaded, Path(out) if out else None, say=say)
    if getattr(loaded.datamodule, "headline_metric", "acc") == "map":  # a detector: boxes and scores out
        from zoo.export.detector import export_detector_run

        profile = "detector" if profile == "default" else profile
        return export_detector_run(loaded, Path(out) if out else run_dir / "export" / profile, profile, say=say)
    profile_ = load_profile(profile)
    record, cfg, datamodule = loaded.record, loaded.cfg, loaded.datamodule
    card, spec = run_card(loaded)
    source = {"kind": "run", "run_dir": str(run_dir.resolve()), "run_id": record.run_id, "task": record.task,
              "method": record.method, "arch": cfg.student.arch, "record_metrics": record.metrics,
              "data": {"name": datamodule.name, "fingerprint": datamodule.fingerprint,
                       "record_fingerprint": record.data.get("fingerprint")}}
    target = Path(out) if out else run_dir / "export" / profile_.name
    say(f"exporting {cfg.student.arch} of {record.task}/{record.run_id} with profile '{profile_.name}' ...")
    result = export_module(loaded.student, target, profile_, input_shape=datamodule.input_shape,
                           batches=held_out_batches(datamodule, "test"), spec=spec, card=card,
                           weights=run_dir / "student.safetensors", source=source)
    _say_parity(result, say)
    return result


def export_retrieval_run(loaded, out: Path | None = None, say: Callable[[str], None] = print,
                         texts: int = 64) -> ExportResult:
    """A retrieval run's student (the query encoder): SPLADE through ``zoo.export.splade_onnx`` (sparse head in the
    graph), dense through ``zoo.export.dense_onnx`` (pooling and normalisation in the graph). Parity is checked on
    the first ``texts`` test conversations as the student reads them. ``out`` defaults to <run>/export/<kind>."""
    from zoo.archs.dense import DenseEncoder
    from zoo.export.dense_onnx import export_dense
    from zoo.export.splade_onnx import export_splade

    student = loaded.student
    if hasattr(student, "vocab_size"):
        kind, export = "splade", export_splade
    elif isinstance(student, DenseEncoder):
        kind, export = "dense", export_dense
    else:
        raise ConfigError(f"no ONNX exporter for a {type(student).__name__} retrieval student",
                          "zoo export handles SPLADE (disco, splade_ce) and dense (dense_ce) query encoders")
    record = loaded.record
    queries = list(loaded.datamodule.queries("test", "conversation").values())[:texts]
    source = {"kind": "run", "run_dir": str(loaded.run_dir.resolve()), "run_id": record.run_id, "task": record.task,
              "method": record.method, "arch": loaded.cfg.student.arch, "record_metrics": record.metrics}
    say(f"exporting the query encoder {loaded.cfg.student.arch} of {record.task}/{record.run_id} ...")
    folder = export(student, out or loaded.run_dir / "export" / kind, texts=queries or None, source=source)
    report = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    parity = report["parity"]
    what = (f"top-{parity['top_k']} terms agree" if kind == "splade"
            else f"min cosine {parity['min_cosine']:.6f}")
    say(f"checked on {parity['texts']} test conversations: max |{kind} output diff| {parity['max_abs_diff']:.2e} <= "
        f"{parity['max_abs_diff_tolerance']:.0e}, {what}")
    say(f"exported -> {folder}")
    return ExportResult(folder, report)


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


def export_command(run: str | None, model: str | None, profile: str = "default", out: str | None = None) -> int:
    """``zoo export run=RUN_DIR | model=CARD [profile=default] [out=DIR]``."""
    from zoo.commands import say

    if (run is None) == (model is None):
        raise ConfigError("zoo export takes exactly one of run=RUN_DIR or model=CARD_NAME",
                          "e.g. zoo export run=runs/kd_digits/<run-id>")
    if run is not None:
        export_run(run, out, profile, say=say)
    else:
        from zoo.export.sources import export_card

        export_card(model, out, profile, say=say)
    return 0


def _say_parity(result: ExportResult, say: Callable[[str], None]) -> None:
    p = result.report["parity"]
    say(f"checked on {p['samples']} {p['split']} samples ({', '.join(p['providers'][:1])}): max |logit diff| "
        f"{p['max_abs_diff']:.2e} <= {p['max_abs_diff_tolerance']:.0e}, top-1 {p['metric_onnx']:.4f} (onnx) vs "
        f"{p['metric_torch']:.4f} (torch)")
    say(f"exported -> {result.folder}")


def _teachers(record) -> str | list[str] | None:
    names = [t.name for t in record.teachers]
    return None if not names else names[0] if len(names) == 1 else names


def _refuse_foreign(out: Path) -> None:
    """Only an earlier export (it has export.json) or an empty folder may be replaced."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "export.json").is_file())):
        raise ConfigError(f"'{out}' exists and is not an export folder; it is left as it is",
                          "pass out=<a new folder>")


@contextlib.contextmanager
def staged_export(out: Path) -> Iterator[Path]:
    """A temp folder beside ``out`` to build an export in: renamed into ``out`` (replacing an earlier export) when
    the block succeeds, deleted when it fails, so ``out`` is never half-written. Refuses an ``out`` that holds
    something other than an export."""
    _refuse_foreign(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the published folder is an ordinary one
    try:
        yield tmp
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished temp folder into place; an earlier export there is moved aside first, then deleted."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.{os.urandom(3).hex()}.old")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


