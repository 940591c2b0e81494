"""A folder downloaded as a zip archive, made while it is sent (zipstream-ng): nothing is
written anywhere first, and memory holds a few chunks at most, whatever the folder's size."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import zipstream

from rosetta.storage.errors import PathRefused
from rosetta.storage.files import Files, Parts
from rosetta.storage.local import UPLOAD_PREFIX, LocalFiles
from rosetta.storage.paths import PATH_MAX
from rosetta.storage.streaming import from_async, in_thread


async def zip_folder(files: Files, path: Parts) -> AsyncIterator[bytes]:
    """The folder as a zip. A path inside it longer than PATH_MAX ends the transfer as failed:
    each entry repeats its whole path, so a chain of folders thousands deep (a few KiB on disk)
    would make an archive of gigabytes, and no such path can be named through the API anyway."""
    loop = asyncio.get_running_loop()
    entries = []
    async for below, entry in files.walk(path):
        if sum(len(part.encode("utf-8", "surrogateescape")) + 1 for part in below) > PATH_MAX:
            raise PathRefused(f"A path in this folder is longer than {PATH_MAX} bytes: download its parts one by one.")
        entries.append((below, entry))
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
