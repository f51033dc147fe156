"""What every exporter returns and writes: ``ExportResult`` and the common fields of ``export.json``.

An export folder is recognised by its ``export.json``: only such a folder (or an empty one) is ever replaced by a
later export (``zoo.atomic.atomic_folder``); anything else at ``out`` is left alone with an error.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.records import hardware, now_iso, package_versions

SCHEMA = 1


@dataclass
class ExportResult:
    folder: Path
    report: dict[str, Any]  # the content of export.json


def export_report(**fields: Any) -> dict[str, Any]:
    """``export.json``: schema and time first, then the exporter's ``fields``, then versions and hardware."""
    return {"schema": SCHEMA, "created": now_iso(), **fields, "versions": package_versions(), "hardware": hardware()}


def is_export_folder(folder: Path) -> bool:
    """Whether ``folder`` may be replaced by a new export: an earlier export (it has export.json) or empty."""
    folder = Path(folder)
    return folder.is_dir() and (not any(folder.iterdir()) or (folder / "export.json").is_file())
