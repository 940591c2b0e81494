"""Where Rosetta keeps its state on disk.

Everything lives under one directory (``ROSETTA_HOME``, default ``./var`` next to the
checkout) so that a test run or a second instance is just another directory.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def home() -> Path:
    return Path(os.environ.get("ROSETTA_HOME", PROJECT_ROOT / "var")).resolve()


def run_dir() -> Path:
    """Sockets and pid files: short paths, since unix socket paths are limited to 107 bytes."""
    path = home() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path
