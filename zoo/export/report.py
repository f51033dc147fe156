"""What every exporter returns and writes: ``ExportResult`` and the common fields of ``export.json``.

An export folder is recognised by its ``export.json``: only such a folder (or an empty one) is ever replaced by a
later export (``zoo.atomic.atomic_folder``); anything else at ``out`` is left alone with an error. Its ``files``
block (``file_entries``) gives the sha256 and size of every file the runtime reads, which the runtime checks before
it serves (``zoo.export.runtime.check_export_files``).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.digests import sha256_file
from zoo.records import hardware, now_iso, package_versions

SCHEMA = 1


@dataclass
class ExportResult:
    folder: Path
    report: dict[str, Any]  # the content of export.json


def export_report(**fields: Any) -> dict[str, Any]:
    """``export.json``: schema and time first, then the exporter's ``fields``, then versions and hardware."""
    return {"schema": SCHEMA, "created": now_iso(), **fields, "versions": package_versions(), "hardware": hardware()}


def run_source(loaded: Any) -> dict[str, Any]:
    """``export.json``'s ``source`` for a student exported from a finished run (``zoo.runs.LoadedRun``): the run, its
    method and student, the metrics its record holds, and the data it is checked on beside the data it was trained on
    (the fingerprints differ when the data changed since)."""
    record, datamodule = loaded.record, loaded.datamodule
    return {"kind": "run", "run_dir": str(Path(loaded.run_dir).resolve()), "run_id": record.run_id,
            "task": record.task, "method": record.method, "arch": loaded.cfg.student.arch,
            "record_metrics": record.metrics,
            "data": {"name": datamodule.name, "fingerprint": datamodule.fingerprint,
                     "record_fingerprint": record.data.get("fingerprint")}}


def is_export_folder(folder: Path) -> bool:
    """Whether ``folder`` may be replaced by a new export: an earlier export (it has export.json) or empty."""
    folder = Path(folder)
    return folder.is_dir() and (not any(folder.iterdir()) or (folder / "export.json").is_file())


def file_entries(folder: Path, names: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """sha256 and size of each of ``names`` in ``folder``, a folder name standing for every file under it (the
    tokenizer), keyed by the path relative to ``folder``: export.json's ``files`` block."""
    folder = Path(folder)
    paths = []
    for name in names:
        path = folder / name
        paths += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size} for p in paths}
