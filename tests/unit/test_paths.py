import os
import stat
from concurrent.futures import ProcessPoolExecutor

import pytest

from rosetta.core.paths import private_home, read_or_create


def _create(path) -> str:
    import os

    return read_or_create(path, lambda: f"value-of-{os.getpid()}")


def test_first_value_is_kept(tmp_path):
    path = tmp_path / "key"
    assert read_or_create(path, lambda: "first") == "first"
    assert read_or_create(path, lambda: "second") == "first"
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_processes_starting_together_agree_on_one_value(tmp_path):
    path = tmp_path / "shared" / "key"
    with ProcessPoolExecutor(4) as pool:
        values = set(pool.map(_create, [path] * 16))
    assert len(values) == 1 and values.pop().startswith("value-of-")
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no temporaries left


def test_home_is_created_private(tmp_path, monkeypatch):
    monkeypatch.setenv("ROSETTA_HOME", str(tmp_path / "new" / "home"))
    home = private_home()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_a_home_made_before_loses_group_and_other_permissions(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    (home / "db").touch()
    (home / "run" / "x.sock").touch()
    for path, mode in ((home, 0o755), (home / "run", 0o775), (home / "db", 0o644), (home / "run" / "x.sock", 0o666)):
        path.chmod(mode)
    outside = tmp_path / "outside"
    outside.touch(mode=0o644)
    (home / "link").symlink_to(outside)
    monkeypatch.setenv("ROSETTA_HOME", str(home))
    private_home()
    entries = (home, home / "run", home / "db", home / "run" / "x.sock")
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in entries}
    assert modes == {"home": 0o700, "run": 0o700, "db": 0o600, "x.sock": 0o600}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # links are not followed


@pytest.mark.skipif(os.getuid() != 0, reason="needs to hand a file to another account")
def test_what_belongs_to_another_account_is_left_as_it_is(tmp_path, monkeypatch):
    home = tmp_path / "home"
    shared = home / "work" / "task"
    shared.mkdir(parents=True, mode=0o755)
    os.chown(shared, 65534, 65534)  # e.g. handed to a task's user namespace
    monkeypatch.setenv("ROSETTA_HOME", str(home))
    private_home()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
