"""Files on another machine, over SFTP through the resource's one SSH connection (as the
user's own account where each user is one there, so what is created is theirs).

SFTP has no openat: a path is checked by resolving its folder with the server's realpath and
requiring the answer to stay under the root's, and a final name that is a symbolic link is
refused rather than opened. Between that check and the operation another process of the
account could swap a folder for a link; what that reaches is only what the account itself
may reach anyway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import posixpath
import secrets
import stat
from collections.abc import AsyncIterator

import asyncssh

from rosetta.computing.errors import ComputingError
from rosetta.computing.transports.ssh import SSHTransport
from rosetta.storage.errors import AlreadyExists, NoSuchFile, PathRefused, StorageUnreachable
from rosetta.storage.files import CHUNK, Entry, Files, Parts, batched
from rosetta.storage.local import UPLOAD_PREFIX
from rosetta.storage.paths import joined


def _kind(attrs: asyncssh.SFTPAttrs) -> str:
    mode = attrs.permissions or 0
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


class SFTPFiles(Files):
    def __init__(self, transport: SSHTransport, root: str, read_only: bool) -> None:
        super().__init__(root, read_only)
        self.transport = transport
        self._real_root: str | None = None

    async def _client(self) -> asyncssh.SFTPClient:
        try:
            sftp = await self.transport.sftp()
        except ComputingError as error:
            raise StorageUnreachable(str(error)) from None
        if self._real_root is None:
            if not await sftp.isdir(self.root):  # a user's own folder, made on first use
                if self.read_only:
                    raise NoSuchFile("This storage's folder does not exist.")
                await sftp.makedirs(self.root, attrs=asyncssh.SFTPAttrs(permissions=0o700), exist_ok=True)
            self._real_root = await sftp.realpath(self.root)
        return sftp

    async def _folder(self, sftp: asyncssh.SFTPClient, path: Parts) -> str:
        """The real path of the folder ``path``, checked to be inside the root."""
        wanted = posixpath.join(self._real_root, *path)
        try:
            real = await sftp.realpath(wanted)
            attrs = await sftp.stat(real)
        except asyncssh.SFTPNoSuchFile:
            raise NoSuchFile(f"There is no {joined(path)!r} in this storage.") from None
        if real != self._real_root and not real.startswith(self._real_root.rstrip("/") + "/"):
            raise PathRefused(
                f"{joined(path)!r} leads outside the storage (a symbolic link): Rosetta does not follow it."
            )
        if real != wanted:
            raise PathRefused(f"{joined(path)!r} goes through a symbolic link: Rosetta does not follow links.")
        if not stat.S_ISDIR(attrs.permissions or 0):
            raise PathRefused(f"{joined(path)!r} is not a folder.")
        return real

    async def _place(self, path: Parts) -> tuple[asyncssh.SFTPClient, str]:
        """(client, checked path) for something in a checked folder; the name itself not followed."""
        if not path:
            raise PathRefused("This needs a file or folder name, not the storage's root.")
        sftp = await self._client()
        return sftp, posixpath.join(await self._folder(sftp, path[:-1]), path[-1])

    async def _lstat(self, sftp, where: str, path: Parts) -> asyncssh.SFTPAttrs:
        try:
            return await sftp.lstat(where)
        except asyncssh.SFTPNoSuchFile:
            raise NoSuchFile(f"There is no {joined(path)!r} in this storage.") from None

    async def _exists(self, sftp, where: str) -> bool:
        try:
            await sftp.lstat(where)
        except asyncssh.SFTPNoSuchFile:
            return False
        return True

    @contextlib.asynccontextmanager
    async def _errors(self):
        try:
            yield
        except asyncssh.SFTPNoSuchFile as error:
            raise NoSuchFile(error.reason or "No such file.") from None
        except asyncssh.SFTPPermissionDenied as error:
            raise PathRefused(f"The account has no permission: {error.reason}.") from None
        except asyncssh.SFTPFailure as error:
            raise PathRefused(error.reason or "The storage refused.") from None
        except (OSError, asyncssh.Error) as error:
            raise StorageUnreachable(str(self.transport.lost(error))) from None

    def _entry(self, name: str, attrs: asyncssh.SFTPAttrs, target: str = "") -> Entry:
        kind = _kind(attrs)
        return Entry(name, kind, (attrs.size or 0) if kind == "file" else 0, float(attrs.mtime or 0), target)

    # -- the interface ---------------------------------------------------------------------

    async def list(self, path: Parts) -> list[Entry]:
        return await self._again_once(self._list, path)

    async def stat(self, path: Parts) -> Entry:
        return await self._again_once(self._stat, path)

    async def _again_once(self, operation, path: Parts):
        """A question that changes nothing is asked again once on a connection found broken
        (the transport has reconnected meanwhile)."""
        try:
            return await operation(path)
        except StorageUnreachable:
            return await operation(path)

    async def _list(self, path: Parts) -> list[Entry]:
        async with self._errors():
            sftp = await self._client()
            folder = await self._folder(sftp, path)
            entries = []
            for found in await sftp.readdir(folder):
                if found.filename in (".", ".."):
                    continue
                entry = self._entry(found.filename, found.attrs)
                if entry.kind == "link":
                    with contextlib.suppress(asyncssh.SFTPError):
                        entry = self._entry(found.filename, found.attrs,
                                            await sftp.readlink(posixpath.join(folder, found.filename)))  # fmt: skip
                entries.append(entry)
            return entries

    async def _stat(self, path: Parts) -> Entry:
        async with self._errors():
            if not path:
                sftp = await self._client()
                return Entry("", "folder", 0, float((await sftp.stat(self._real_root)).mtime or 0))
            sftp, where = await self._place(path)
            return self._entry(path[-1], await self._lstat(sftp, where, path))

    async def read(self, path: Parts) -> AsyncIterator[bytes]:
        async with self._errors():
            sftp, where = await self._place(path)
            attrs = await self._lstat(sftp, where, path)
            if _kind(attrs) != "file":
                raise PathRefused(f"{joined(path)!r} is not a file.")
            size = attrs.size or 0
            async with sftp.open(where, "rb", block_size=0) as handle:
                async for chunk in _read_ahead(handle, size, sftp.limits.max_read_len):
                    yield chunk

    async def write(self, path: Parts, chunks: AsyncIterator[bytes]) -> Entry:
        self.writable()
        async with self._errors():
            sftp, where = await self._place(path)
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                if _kind(await sftp.lstat(where)) == "folder":
                    raise AlreadyExists(f"{joined(path)!r} is a folder.")
            temporary = posixpath.join(posixpath.dirname(where), UPLOAD_PREFIX + secrets.token_hex(8))
            try:
                attrs = asyncssh.SFTPAttrs(permissions=0o644)
                async with sftp.open(temporary, "wb", attrs, block_size=0) as handle:
                    await _write_ahead(handle, chunks, sftp.limits.max_write_len)
                await sftp.posix_rename(temporary, where)
            except BaseException:
                with contextlib.suppress(Exception):
                    await sftp.remove(temporary)
                raise
            return self._entry(path[-1], await sftp.lstat(where))

    async def mkdir(self, path: Parts) -> None:
        self.writable()
        async with self._errors():
            sftp, where = await self._place(path)
            if await self._exists(sftp, where):
                raise AlreadyExists(f"{joined(path)!r} already exists.")
            await sftp.mkdir(where, asyncssh.SFTPAttrs(permissions=0o755))

    async def _two(self, source: Parts, destination: Parts, verb: str) -> tuple[asyncssh.SFTPClient, str, str]:
        if destination[: len(source)] == source:
            raise PathRefused(f"A folder cannot be {verb} into itself.")
        sftp, from_path = await self._place(source)
        _, to_path = await self._place(destination)
        await self._lstat(sftp, from_path, source)
        if await self._exists(sftp, to_path):
            raise AlreadyExists(f"{joined(destination)!r} already exists.")
        return sftp, from_path, to_path

    async def move(self, source: Parts, destination: Parts) -> None:
        self.writable()
        async with self._errors():
            sftp, from_path, to_path = await self._two(source, destination, "moved")
            await sftp.posix_rename(from_path, to_path)

    async def copy(self, source: Parts, destination: Parts) -> None:
        self.writable()
        async with self._errors():
            sftp, from_path, to_path = await self._two(source, destination, "copied")
            await self._copy(sftp, from_path, to_path)

    async def _copy(self, sftp: asyncssh.SFTPClient, source: str, destination: str) -> None:
        attrs = await sftp.lstat(source)
        kind = _kind(attrs)
        if kind == "link":
            await sftp.symlink(await sftp.readlink(source), destination)
        elif kind == "file":
            await sftp.copy(source, destination, remote_only=False)
        elif kind == "folder":
            await sftp.mkdir(destination, asyncssh.SFTPAttrs(permissions=0o755))
            for found in await sftp.readdir(source):
                if found.filename not in (".", ".."):
                    await self._copy(sftp, posixpath.join(source, found.filename),
                                     posixpath.join(destination, found.filename))  # fmt: skip

    async def remove(self, path: Parts) -> None:
        self.writable()
        async with self._errors():
            sftp, where = await self._place(path)
            if _kind(await self._lstat(sftp, where, path)) == "folder":
                await sftp.rmtree(where)
            else:
                await sftp.remove(where)


# Transfers keep the SFTP pipe full: up to AHEAD x BLOCK bytes are requested from the server
# while what came before is sent on to the client, or written to it while the next block is
# gathered from the client. Waiting for each block before asking for the next one left the link
# idle half the time. Memory: about AHEAD x BLOCK per transfer.
BLOCK = CHUNK
AHEAD = 4


async def _read_ahead(handle: asyncssh.SFTPClientFile, size: int, block: int) -> AsyncIterator[bytes]:
    """The file's first ``size`` bytes (what the response announced), in order, as the server's
    largest reads, each one request (asyncssh would split larger ones and copy them together)."""
    pending: collections.deque[tuple[int, int, asyncio.Future]] = collections.deque()
    offset = 0
    try:
        while pending or offset < size:
            while len(pending) * block < AHEAD * BLOCK and offset < size:
                length = min(block, size - offset)
                pending.append((offset, length, asyncio.ensure_future(handle.read(length, offset))))
                offset += length
            start, length, reading = pending.popleft()
            chunk = await reading
            while chunk:
                yield chunk
                start, length = start + len(chunk), length - len(chunk)
                chunk = await handle.read(length, start) if length else b""  # a short read: the rest
            if length:
                return  # the file shrank meanwhile
    finally:
        await _cancel([reading for _, _, reading in pending])


async def _write_ahead(handle: asyncssh.SFTPClientFile, chunks: AsyncIterator[bytes], block: int) -> None:
    """Write the chunks in order as the server's largest writes, each one request on a slice of
    what arrived (no copy), with up to AHEAD x BLOCK bytes awaiting the server's answer."""
    in_flight: set[asyncio.Future] = set()
    offset = 0
    try:
        async for gathered in batched(chunks, BLOCK):
            view = memoryview(gathered)
            for start in range(0, len(view), block):
                if len(in_flight) * block >= AHEAD * BLOCK:
                    in_flight = await _one_done(in_flight)
                piece = view[start : start + block]
                in_flight.add(asyncio.ensure_future(handle.write(piece, offset)))
                offset += len(piece)
        while in_flight:
            in_flight = await _one_done(in_flight)
    finally:
        await _cancel(in_flight)


async def _one_done(in_flight: set[asyncio.Future]) -> set[asyncio.Future]:
    done, pending = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
    for finished in done:
        finished.result()  # a refused write ends the upload
    return pending


async def _cancel(futures) -> None:
    for future in futures:
        future.cancel()
    await asyncio.gather(*futures, return_exceptions=True)
