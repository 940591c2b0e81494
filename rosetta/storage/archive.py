"""A folder downloaded as a zip archive, made while it is sent (zipstream-ng): nothing is
written anywhere first, and memory holds a few chunks at most, whatever the folder's size."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import zipstream

from rosetta.storage.files import Files, Parts
from rosetta.storage.local import UPLOAD_PREFIX, LocalFiles
from rosetta.storage.streaming import from_async, in_thread


async def zip_folder(files: Files, path: Parts) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    entries = [(below, entry) async for below, entry in files.walk(path)]
    archive = zipstream.ZipStream(compress_type=zipstream.ZIP_STORED, sized=False)
    for below, entry in entries:
        name = "/".join(below)
        if entry.kind == "folder":
            archive.mkdir(name)
        elif entry.kind == "file" and not entry.name.startswith(UPLOAD_PREFIX):
            archive.add(_reader(files, (*path, *below), loop), name)
        # links are not followed; other kinds have no content
    async for chunk in in_thread(iter(archive)):
        yield chunk


def _reader(files: Files, path: Parts, loop):
    if isinstance(files, LocalFiles):
        return _lazy(lambda: files.read_sync(path))
    return _lazy(lambda: from_async(files.read(path), loop))


def _lazy(open_it):
    """Opened only when the archive reaches it (a folder may hold more files than descriptors)."""
    yield from open_it()
