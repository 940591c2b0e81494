"""Where Rosetta keeps its state on disk.

Everything lives under one directory (``ROSETTA_HOME``, default ``./var`` next to the
checkout) so that a test run or a second instance is just another directory. That directory
holds the database (session keys among it), the secret key and the sockets the gateway
trusts: it and everything in it are readable by the platform's own account only.
"""

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Files the platform creates get no group or other permissions, whoever creates them
# (SQLite creates the database and its -wal/-shm files with 0644 less the umask).
PRIVATE_UMASK = 0o077


def home() -> Path:
    return Path(os.environ.get("ROSETTA_HOME", PROJECT_ROOT / "var")).resolve()


_inherited_umask: int | None = None  # the umask this process was started with, before keep_private


def keep_private() -> None:
    """Make every file this process (and its children) creates private to its account."""
    global _inherited_umask
    previous = os.umask(PRIVATE_UMASK)
    if _inherited_umask is None:
        _inherited_umask = previous


def inherited_umask() -> int:
    """The umask whoever ran this process chose: files made for them (a download of the CLI) get
    the modes their other files get, not the platform's private ones."""
    if _inherited_umask is not None:
        return _inherited_umask
    current = os.umask(0)
    os.umask(current)
    return current


def private_home() -> Path:
    """The home directory, created 0700; a home made before (or by hand) loses its group and
    other permissions, down the whole tree.

    Only entries the platform's account owns are changed: anything under the home that belongs
    to another account was handed to it on purpose (and stays out of reach of others anyway,
    behind the home's own 0700)."""
    path = home()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _restrict(path)
    for directory, subdirectories, files in os.walk(path):
        if Path(directory) == path and "storage" in subdirectories:
            subdirectories.remove("storage")  # users' files (rosetta.storage): their modes are theirs
        for name in (*subdirectories, *files):
            _restrict(Path(directory, name))
    return path


def _restrict(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # another process may remove its own temporaries meanwhile
        status = path.lstat()
        if stat.S_ISLNK(status.st_mode) or status.st_uid != os.getuid() or not status.st_mode & 0o077:
            return
        path.chmod(stat.S_IMODE(status.st_mode) & ~0o077)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only the platform's account can enter."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def run_dir() -> Path:
    """Sockets and pid files: short paths, since unix socket paths are limited to 107 bytes."""
    return private_dir(home() / "run")


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The file's text, creating it with ``make()`` if missing. Safe when several processes
    start at once: the file appears complete (link of a written temporary) or not at all."""
    if not path.exists():
        private_dir(path.parent)
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
