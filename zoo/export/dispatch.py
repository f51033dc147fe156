"""``zoo export run=RUN_DIR``: a finished run's student through the exporter of its task's kind (``zoo.kinds``).

    export_run("runs/kd_digits/<id>")                       image classifier: logits graph, profile "default"
    export_run("runs/detr_kitti/<id>")                      detector: (boxes, scores) graph, profile "detector"
    export_run("runs/disco_mini/<id>")                      retrieval: the query encoder with its tokenizer

``profile`` defaults to the kind's own; a kind whose exports have no profiles refuses one, and a kind without an
exporter is a one-line error, never a guess.
"""

from collections.abc import Callable
from pathlib import Path

from zoo.errors import ConfigError
from zoo.kinds import KINDS, kind_of
from zoo.runs import load_run


def export_run(run: str | Path, out: str | Path | None = None, profile: str | None = None,
               say: Callable[[str], None] = print):
    """The ``ExportResult`` of exporting the run folder ``run`` (config.yaml, student.safetensors, record.json)."""
    loaded = load_run(Path(run))
    kind = kind_of(loaded.datamodule)
    if kind.export is None:
        exportable = [name for name in KINDS.names() if KINDS.get(name).export is not None]
        raise ConfigError(f"runs of {kind.name} tasks cannot be exported yet",
                          f"zoo export handles runs of {', '.join(exportable)} tasks")
    if profile is not None and kind.export_profile is None:
        raise ConfigError(f"{kind.name} exports take no profile, got profile={profile}",
                          "leave profile= out; the export is checked on the run's test split")
    return kind.export(loaded, Path(out) if out else None, profile or kind.export_profile, say)
