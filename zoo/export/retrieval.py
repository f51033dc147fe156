"""The ``retrieval`` kind's exporter: a retrieval run's student, the query encoder, with its tokenizer.

The exporter is chosen by the representation the student's class declares: ``sparse`` (SPLADE) through
``zoo.export.splade_onnx`` (the sparse head in the graph), ``dense`` through ``zoo.export.dense_onnx`` (pooling and
normalisation in the graph). Parity is checked on the first ``texts`` test conversations as the student reads
them. ``out`` defaults to ``<run>/export/<splade|dense>``.
"""

import json
from collections.abc import Callable
from pathlib import Path

from zoo.errors import ConfigError
from zoo.export.dense_onnx import export_dense
from zoo.export.report import ExportResult, run_source
from zoo.export.splade_onnx import export_splade

EXPORTERS = {"sparse": ("splade", export_splade), "dense": ("dense", export_dense)}  # representation -> folder kind


def export_retrieval_run(loaded, out: Path | None = None, say: Callable[[str], None] = print,
                         texts: int = 64) -> ExportResult:
    student = loaded.student
    if student.representation not in EXPORTERS:
        raise ConfigError(f"no ONNX exporter for a '{student.representation}' retrieval student",
                          f"zoo export handles {', '.join(EXPORTERS)} query encoders")
    kind, export = EXPORTERS[student.representation]
    record = loaded.record
    queries = list(loaded.datamodule.queries("test", "conversation").values())[:texts]
    source = run_source(loaded)
    say(f"exporting the query encoder {loaded.cfg.student.arch} of {record.task}/{record.run_id} ...")
    folder = export(student, Path(out) if out else loaded.run_dir / "export" / kind, texts=queries or None,
                    source=source)
    report = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    parity = report["parity"]
    what = (f"top-{parity['top_k']} terms agree" if kind == "splade"
            else f"min cosine {parity['min_cosine']:.6f}")
    say(f"checked on {parity['texts']} test conversations: max |{kind} output diff| {parity['max_abs_diff']:.2e} <= "
        f"{parity['max_abs_diff_tolerance']:.0e}, {what}")
    say(f"exported -> {folder}")
    return ExportResult(folder, report)
