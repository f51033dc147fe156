"""Where the zoo's data folders, run folders and caches live.

tasks/, models/, export/ and leaderboards/ are looked up in a source checkout
first (next to the zoo package), then inside the installed package, where the
wheel carries them as zoo/_data/<name>.
"""

import os
from pathlib import Path

DATA_FOLDERS = ("tasks", "models", "export", "leaderboards")
_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; expected one of {DATA_FOLDERS}")
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir() and (_PACKAGE_DIR.parent / "pyproject.toml").is_file():
        return checkout
    return _PACKAGE_DIR / "_data" / name


def zoo_home() -> Path:
    """Cache root: ZOO_HOME, else ~/.cache/zoo."""
    return Path(os.environ.get("ZOO_HOME") or Path.home() / ".cache" / "zoo")


def user_models_dir() -> Path:
    """Model cards of the user's own, beside the built-in ones, without editing the installed package."""
    return zoo_home() / "models"


def teacher_weights_dir() -> Path:
    return zoo_home() / "teachers"


def student_inits_dir() -> Path:
    return zoo_home() / "student_inits"


def teacher_outputs_dir() -> Path:
    return zoo_home() / "teacher_outputs"
