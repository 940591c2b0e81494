"""Sweeping the temporaries of uploads whose writer died (rosetta.storage.sweep), on real files and locks."""

import fcntl
import os
import time

from rosetta.storage.sweep import ABANDONED_AFTER, sweep_root


def _temporary(folder, name: str, age: float) -> str:
    path = folder / name
    path.write_bytes(b"x" * 1024)
    then = time.time() - age
    os.utime(path, (then, then))
    return str(path)


def test_only_unlocked_temporaries_unchanged_for_long_are_removed(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    abandoned = _temporary(deep, ".rosetta-upload-0001", ABANDONED_AFTER + 60)
    recent = _temporary(tmp_path, ".rosetta-upload-0002", 10)
    held = _temporary(tmp_path, ".rosetta-upload-0003", ABANDONED_AFTER + 60)
    users = _temporary(tmp_path, "old-results.txt", ABANDONED_AFTER + 60)
    writer = os.open(held, os.O_WRONLY)
    fcntl.flock(writer, fcntl.LOCK_EX)  # a live upload's writer
    try:
        assert sweep_root(str(tmp_path)) == 1
    finally:
        os.close(writer)
    assert not os.path.exists(abandoned)
    assert all(os.path.exists(path) for path in (recent, held, users))
    assert sweep_root(str(tmp_path)) == 1  # its writer gone, the held one is abandoned too
    assert not os.path.exists(held)


def test_links_are_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    theirs = _temporary(outside, ".rosetta-upload-0004", ABANDONED_AFTER + 60)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    os.symlink(theirs, root / ".rosetta-upload-0005")
    assert sweep_root(str(root)) == 0
    assert os.path.exists(theirs)
