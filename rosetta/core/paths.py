"""Where Rosetta keeps its state on disk.

Everything lives under one directory (``ROSETTA_HOME``, default ``./var`` next to the
checkout) so that a test run or a second instance is just another directory.
"""

import os
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def home() -> Path:
    return Path(os.environ.get("ROSETTA_HOME", PROJECT_ROOT / "var")).resolve()


def run_dir() -> Path:
    """Sockets and pid files: short paths, since unix socket paths are limited to 107 bytes."""
    path = home() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The file's text, creating it with ``make()`` if missing. Safe when several processes
    start at once: the file appears complete (link of a written temporary) or not at all."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won; use its value
        finally:
            temporary.unlink()
    return path.read_text().strip()
