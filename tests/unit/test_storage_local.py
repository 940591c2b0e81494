"""Files on this machine: an upload never replaces a file unless asked, even one that appeared
while it ran; a file is sent as it was opened; folders of any depth are walked, copied and
removed. (Through the running platform: tests/e2e/test_file_transfers.py.)"""

from __future__ import annotations

import asyncio
import os

import pytest

from rosetta.storage import descriptors
from rosetta.storage.errors import AlreadyExists, PathRefused
from rosetta.storage.local import LocalFiles


async def body(*chunks: bytes, pause: float = 0):
    for chunk in chunks:
        await asyncio.sleep(pause)
        yield chunk


async def test_two_uploads_of_one_name_without_overwrite_one_wins(tmp_path):
    files = LocalFiles(str(tmp_path), read_only=False)
    first = asyncio.ensure_future(files.write(("result.txt",), body(b"one", b"-first", pause=0.1)))
    second = asyncio.ensure_future(files.write(("result.txt",), body(b"two", b"-second", pause=0.3)))
    done = await asyncio.gather(first, second, return_exceptions=True)
    assert done[0].size == 9 and isinstance(done[1], AlreadyExists), done
    assert (tmp_path / "result.txt").read_bytes() == b"one-first"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]
    with pytest.raises(AlreadyExists, match="overwrite=true"):  # refused before the body is read
        await files.write(("result.txt",), body(b"never read", pause=60))
    replaced = await files.write(("result.txt",), body(b"three"), overwrite=True)
    assert replaced.size == 5 and (tmp_path / "result.txt").read_bytes() == b"three"


async def test_a_file_is_sent_as_it_was_opened(tmp_path):
    files = LocalFiles(str(tmp_path), read_only=False)
    (tmp_path / "data.bin").write_bytes(b"a" * 3_000_000)
    entry, chunks = await files.open(("data.bin",))
    (tmp_path / "new.bin").write_bytes(b"b" * 10)
    os.replace(tmp_path / "new.bin", tmp_path / "data.bin")
    assert entry.size == 3_000_000
    assert b"".join([chunk async for chunk in chunks]) == b"a" * 3_000_000
    entry, chunks = await files.open(("data.bin",))
    with open(tmp_path / "data.bin", "ab") as grown:
        grown.write(b"more")  # grew after it was opened: what was announced is sent
    assert b"".join([chunk async for chunk in chunks]) == b"b" * 10
    (tmp_path / "data.bin").write_bytes(b"c" * 3_000_000)
    entry, chunks = await files.open(("data.bin",))
    os.truncate(tmp_path / "data.bin", 10)
    with pytest.raises(PathRefused, match="shrank"):
        async for _ in chunks:
            pass


async def test_folders_deeper_than_the_recursion_limit(tmp_path):
    files = LocalFiles(str(tmp_path), read_only=False)
    depth = 1100
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    try:
        walked = [below async for below, _ in files.walk(())]
        assert len(walked) == depth + 1 and walked[-1] == ("d",) * depth + ("bottom.txt",)
        await files.copy(("d",), ("copy",))
        assert (await files.stat(("copy", *("d",) * (depth - 1), "bottom.txt"))).kind == "file"
        await files.remove(("d",))
        await files.remove(("copy",))
        assert await files.list(()) == []
    finally:
        parent = os.open(tmp_path, os.O_RDONLY)  # pytest's own clean-up of its temporary folders recurses
        for left in os.listdir(parent):
            descriptors.remove_tree(parent, left)
        os.close(parent)
