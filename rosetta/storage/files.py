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
    def read(self, path: Parts) -> AsyncIterator[bytes]:
        """A file's content, chunk by chunk."""

    @abstractmethod
    async def write(self, path: Parts, chunks: AsyncIterator[bytes]) -> Entry:
        """Write to a temporary name beside the file and rename it into place once every byte
        arrived: an interrupted upload leaves nothing under the final name."""

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
        """Everything under a folder, parents before their contents (paths relative to it)."""
        for entry in await self.list(path):
            yield (entry.name,), entry
            if entry.kind == "folder":
                async for below, found in self.walk((*path, entry.name)):
                    yield (entry.name, *below), found

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
