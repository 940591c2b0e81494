from concurrent.futures import ProcessPoolExecutor

from rosetta.core.paths import read_or_create


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
