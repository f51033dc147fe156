"""The wheel carries the data folders (tasks/, models/, export/, leaderboards/) inside the package."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_the_data_folders(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("distill_zoo-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for task in (ROOT / "tasks").rglob("*.yaml"):
        assert f"zoo/_data/tasks/{task.relative_to(ROOT / 'tasks').as_posix()}" in names
    for folder in ("models", "export", "leaderboards"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".yaml", ".md", ".csv", ".json"):
                assert f"zoo/_data/{path.relative_to(ROOT).as_posix()}" in names, path
    for package in (ROOT / "zoo").rglob("__init__.py"):  # every package of the code, e.g. zoo/kinds, zoo/commands
        assert package.relative_to(ROOT).as_posix() in names, f"{package.parent.name} is missing from the wheel"
    for data in (ROOT / "zoo").rglob("*.json"):  # data beside the code, e.g. zoo search's measured engine costs
        assert data.relative_to(ROOT).as_posix() in names, data
    assert "zoo/cli.py" in names and not any(n.startswith(("tasks/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "zoo = zoo.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
