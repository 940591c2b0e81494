"""What a storage's files offer, whatever holds them: one small async interface that the API,
the pages and the zip stream use alike. Paths are components already checked by
rosetta.storage.paths; each backend confines them to its root as it resolves them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from rosetta.storage.errors import ReadOnly

CHUNK = 1024 * 1024  # bytes read or written at a time: large enough to be fast, small enough to stay flat

Parts = tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # file | folder | link | other
    size: int
    modified: float  # seconds since the epoch
    target: str = ""  # where a symbolic link points (shown, never followed)


class Files(ABC):
    def __init__(self, root: str, read_only: bool) -> None:
        self.root = root
        self.read_only = read_only

    def writable(self) -> None:
        if self.read_only:
            raise ReadOnly("This storage is read-only.")

    @abstractmethod
    async def list(self, path: Parts) -> list[Entry]:
        """The folder's entries (a symbolic link is listed, not followed)."""

    @abstractmethod
    async def stat(self, path: Parts) -> Entry: ...

    @abstractmethod
    async def open(self, path: Parts) -> tuple[Entry, AsyncIterator[bytes]]:
        """A file, opened: its entry as found then (the size from the open file itself, not
        from an earlier look that another file may have replaced since) and its content, which
        is exactly that many bytes or an error. The content is iterated to its end or closed."""

    async def read(self, path: Parts) -> AsyncIterator[bytes]:
        """A file's content, chunk by chunk."""
        _, content = await self.open(path)
        try:
            async for chunk in content:
                yield chunk
        finally:
            await content.aclose()

    @abstractmethod
    async def write(self, path: Parts, chunks: AsyncIterator[bytes], overwrite: bool = False) -> Entry:
        """Write to a temporary name beside the file and give it the file's name once every
        byte arrived: an interrupted upload leaves nothing under the final name. An existing
        file is replaced only with ``overwrite``; else AlreadyExists, before the body is read
        if the name is taken already, and at the end if it was taken meanwhile."""

    @abstractmethod
    async def mkdir(self, path: Parts) -> None: ...

    @abstractmethod
    async def move(self, source: Parts, destination: Parts) -> None:
        """Rename; the destination must not exist."""

    @abstractmethod
    async def copy(self, source: Parts, destination: Parts) -> None:
        """Copy a file or a whole folder; the destination must not exist."""

    @abstractmethod
    async def remove(self, path: Parts) -> None:
        """Remove a file, a link, or a folder with everything in it."""

    async def walk(self, path: Parts) -> AsyncIterator[tuple[Parts, Entry]]:
        """Everything under a folder, parents before their contents, by name (paths relative
        to it). A list of folders to visit, not recursion: a folder may be as deep as it likes."""
        pending: list[Parts] = [()]
        while pending:
            below = pending.pop()
            entries = sorted(await self.list((*path, *below)), key=lambda entry: entry.name)
            for entry in entries:
                yield (*below, entry.name), entry
            pending.extend((*below, entry.name) for entry in reversed(entries) if entry.kind == "folder")

    async def close(self) -> None:  # noqa: B027 -- only remote backends hold something
        pass


async def batched(chunks: AsyncIterator[bytes], size: int = CHUNK) -> AsyncIterator[bytes]:
    """Small pieces as they arrive from the network, in chunks of about ``size`` bytes."""
    gathered: list[bytes] = []
    length = 0
    async for chunk in chunks:
        gathered.append(chunk)
        length += len(chunk)
        if length >= size:
            yield b"".join(gathered)  # one copy
            gathered, length = [], 0
    if gathered:
        yield b"".join(gathered)
