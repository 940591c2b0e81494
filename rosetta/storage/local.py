"""Files on this machine, confined to a root by resolving every path from a directory file
descriptor, one component at a time, with O_NOFOLLOW: a symbolic link anywhere on the way —
made by a user or by a task between two requests — is refused, never followed, so no path
reaches outside the root however the tree changes meanwhile. Blocking calls run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import stat
from collections.abc import AsyncIterator, Iterator

from rosetta.storage import descriptors
from rosetta.storage.errors import AlreadyExists, NoSuchFile, PathRefused, StorageFull
from rosetta.storage.files import CHUNK, Entry, Files, Parts
from rosetta.storage.paths import joined
from rosetta.storage.streaming import in_thread

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_MODE, FOLDER_MODE = 0o644, 0o755  # inside a root that is itself private (0700)
UPLOAD_PREFIX = descriptors.UPLOAD_PREFIX  # temporaries, given their name once complete


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _taken(path: Parts) -> AlreadyExists:
    return AlreadyExists(f"{joined(path)!r} already exists (send overwrite=true to replace it).")


class LocalFiles(Files):
    def __init__(self, root: str, read_only: bool, owner: tuple[int, int] | None = None) -> None:
        super().__init__(root, read_only)
        self.owner = owner  # (uid, gid) given to what is created, or None: the platform's account

    # -- resolution ------------------------------------------------------------------------

    def ensure_root(self) -> None:
        """Create the root (a user's own folder of a per-user storage) when missing."""
        if not os.path.isdir(self.root):
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            if self.owner is not None:
                os.chown(self.root, *self.owner)

    def _open_root(self) -> int:
        try:
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if self.read_only:
                raise NoSuchFile("This storage's folder does not exist.") from None
            self.ensure_root()
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _open_dir(self, path: Parts) -> int:
        """A descriptor of the folder ``path``; the caller closes it."""
        fd = self._open_root()
        try:
            for index, part in enumerate(path):
                try:
                    child = os.open(part, _DIR, dir_fd=fd)
                except OSError as error:
                    raise self._explain(error, fd, part, path[: index + 1]) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _explain(error: OSError, fd: int, part: str, path: Parts) -> Exception:
        shown = joined(path)
        if error.errno == errno.ENOENT:
            return NoSuchFile(f"There is no {shown!r} in this storage.")
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                return PathRefused(f"{shown!r} is a symbolic link: Rosetta does not follow links.")
        if error.errno in (errno.ENOTDIR, errno.ELOOP):
            return PathRefused(f"{shown!r} is not a folder.")
        if error.errno == errno.ENAMETOOLONG:
            return PathRefused(f"{shown!r} is too long a name.")
        return PathRefused(f"{shown!r}: {error.strerror}.")

    def _lstat(self, fd: int, name: str, path: Parts) -> os.stat_result:
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise NoSuchFile(f"There is no {joined(path)!r} in this storage.") from None

    def _entry(self, fd: int, name: str, found: os.stat_result) -> Entry:
        kind = _kind(found.st_mode)
        target = ""
        if kind == "link":
            with contextlib.suppress(OSError):
                target = os.readlink(name, dir_fd=fd)
        return Entry(name, kind, found.st_size if kind == "file" else 0, found.st_mtime, target)

    def _exists(self, fd: int, name: str) -> bool:
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _give(self, fd: int, name: str) -> None:
        if self.owner is not None:
            os.chown(name, *self.owner, dir_fd=fd, follow_symlinks=False)

    # -- the operations, blocking ----------------------------------------------------------

    def _list(self, path: Parts) -> list[Entry]:
        fd = self._open_dir(path)
        try:
            entries = []
            for name in os.listdir(fd):
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                    entries.append(self._entry(fd, name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
            return entries
        finally:
            os.close(fd)

    def _stat(self, path: Parts) -> Entry:
        if not path:
            found = os.fstat(fd := self._open_root())
            os.close(fd)
            return Entry("", "folder", 0, found.st_mtime)
        fd = self._open_dir(path[:-1])
        try:
            return self._entry(fd, path[-1], self._lstat(fd, path[-1], path))
        finally:
            os.close(fd)

    def _open_file(self, path: Parts) -> int:
        if not path:
            raise PathRefused("The storage's root is a folder.")
        parent = self._open_dir(path[:-1])
        try:
            try:
                fd = os.open(path[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
            except OSError as error:
                raise self._explain(error, parent, path[-1], path) from None
        finally:
            os.close(parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise PathRefused(f"{joined(path)!r} is not a file.")
        os.set_blocking(fd, True)
        return fd

    def _mkdir(self, path: Parts) -> None:
        parent = self._open_dir(path[:-1])
        try:
            os.mkdir(path[-1], FOLDER_MODE, dir_fd=parent)
            self._give(parent, path[-1])
        except FileExistsError:
            raise AlreadyExists(f"{joined(path)!r} already exists.") from None
        finally:
            os.close(parent)

    def _move(self, source: Parts, destination: Parts) -> None:
        if destination[: len(source)] == source:
            raise PathRefused("A folder cannot be moved into itself.")
        from_fd = self._open_dir(source[:-1])
        try:
            to_fd = self._open_dir(destination[:-1])
            try:
                self._lstat(from_fd, source[-1], source)
                if self._exists(to_fd, destination[-1]):
                    raise AlreadyExists(f"{joined(destination)!r} already exists.")
                descriptors.rename_without_replacing(from_fd, source[-1], to_fd, destination[-1])
            except FileExistsError:
                raise AlreadyExists(f"{joined(destination)!r} already exists.") from None
            except OSError as error:
                raise PathRefused(f"The move was refused: {error.strerror}.") from None
            finally:
                os.close(to_fd)
        finally:
            os.close(from_fd)

    def _copy(self, source: Parts, destination: Parts) -> None:
        if destination[: len(source)] == source:
            raise PathRefused("A folder cannot be copied into itself.")
        from_fd = self._open_dir(source[:-1])
        try:
            to_fd = self._open_dir(destination[:-1])
            try:
                self._lstat(from_fd, source[-1], source)
                if self._exists(to_fd, destination[-1]):
                    raise AlreadyExists(f"{joined(destination)!r} already exists.")
                made = self._give if self.owner is not None else None
                descriptors.copy_tree(from_fd, source[-1], to_fd, destination[-1], made)
            except FileExistsError:
                raise AlreadyExists(f"{joined(destination)!r} already exists.") from None
            except OSError as error:
                raise PathRefused(f"The copy stopped: {error.strerror}.") from None
            finally:
                os.close(to_fd)
        finally:
            os.close(from_fd)

    def _remove(self, path: Parts) -> None:
        if not path:
            raise PathRefused("The storage's root cannot be removed.")
        parent = self._open_dir(path[:-1])
        try:
            found = self._lstat(parent, path[-1], path)
            if stat.S_ISDIR(found.st_mode):
                descriptors.remove_tree(parent, path[-1])  # by descriptors: links are removed, not followed
            else:
                os.unlink(path[-1], dir_fd=parent)
        except OSError as error:
            raise PathRefused(f"The removal stopped: {error.strerror}.") from None
        finally:
            os.close(parent)

    # -- the interface ---------------------------------------------------------------------

    async def list(self, path: Parts) -> list[Entry]:
        return await asyncio.to_thread(self._list, path)

    async def stat(self, path: Parts) -> Entry:
        return await asyncio.to_thread(self._stat, path)

    async def open(self, path: Parts) -> tuple[Entry, AsyncIterator[bytes]]:
        content = self._content(path)
        entry = await anext(content)
        return entry, content

    async def _content(self, path: Parts) -> AsyncIterator:
        """The entry as opened (its size from the descriptor), then exactly that many bytes."""
        fd = await asyncio.to_thread(self._open_file, path)
        try:
            found = os.fstat(fd)
            yield Entry(path[-1], "file", found.st_size, found.st_mtime)
            left = found.st_size
            while left:
                chunk = await asyncio.to_thread(os.read, fd, min(CHUNK, left))
                if not chunk:
                    raise PathRefused(f"{joined(path)!r} shrank while it was read.")
                left -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def walk(self, path: Parts) -> AsyncIterator[tuple[Parts, Entry]]:
        """As Files.walk, by descriptors in a thread (rosetta.storage.descriptors.walk_tree)."""
        async for below, entries in in_thread(self._walk(path)):
            for fields in entries:
                yield (*below, fields[0]), Entry(*fields)

    def _walk(self, path: Parts) -> Iterator[tuple[Parts, list]]:
        fd = self._open_dir(path)
        try:
            yield from descriptors.walk_tree(fd)
        finally:
            os.close(fd)

    def read_sync(self, path: Parts) -> Iterator[bytes]:
        fd = self._open_file(path)
        try:
            while chunk := os.read(fd, CHUNK):
                yield chunk
        finally:
            os.close(fd)

    async def write(self, path: Parts, chunks: AsyncIterator[bytes], overwrite: bool = False) -> Entry:
        self.writable()
        if not path:
            raise PathRefused("This needs a file name.")
        parent, fd, temporary = await asyncio.to_thread(self._start_upload, path, overwrite)
        try:
            await _write_behind(fd, chunks)
            written = os.fstat(fd)
            await asyncio.to_thread(os.close, fd)
            fd = -1
            await asyncio.to_thread(self._place, parent, temporary, path, overwrite)
            return Entry(path[-1], "file", written.st_size, written.st_mtime)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=parent)
            if isinstance(error, ConnectionError):  # the client went away: nothing to tell it
                raise
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull("The storage is full: nothing was kept of this upload.") from None
            raise PathRefused(f"The storage refused the file: {error.strerror}.") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=parent)
            raise
        finally:
            if fd >= 0:
                os.close(fd)
            os.close(parent)

    def _start_upload(self, path: Parts, overwrite: bool) -> tuple[int, int, str]:
        """Refused before the body is read when the name is taken (unless to be replaced)."""
        parent = self._open_dir(path[:-1])
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.stat(path[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                    raise AlreadyExists(f"{joined(path)!r} is a folder.")
                if not overwrite:
                    raise _taken(path)
            temporary = UPLOAD_PREFIX + secrets.token_hex(8)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         FILE_MODE, dir_fd=parent)  # fmt: skip
            descriptors.hold(fd)  # for as long as this upload lives (rosetta.storage.sweep)
            self._give(parent, temporary)
            return parent, fd, temporary
        except BaseException:
            os.close(parent)
            raise

    @staticmethod
    def _place(parent: int, temporary: str, path: Parts, overwrite: bool) -> None:
        """The complete upload under its name: replacing a file only when asked, and never a
        file that appeared while the upload was on (two uploads of one name: one wins)."""
        if overwrite:
            os.rename(temporary, path[-1], src_dir_fd=parent, dst_dir_fd=parent)
            return
        try:
            descriptors.link_without_replacing(parent, temporary, path[-1])
        except FileExistsError:
            raise _taken(path) from None

    async def mkdir(self, path: Parts) -> None:
        self.writable()
        await asyncio.to_thread(self._mkdir, path)

    async def move(self, source: Parts, destination: Parts) -> None:
        self.writable()
        await asyncio.to_thread(self._move, source, destination)

    async def copy(self, source: Parts, destination: Parts) -> None:
        self.writable()
        await asyncio.to_thread(self._copy, source, destination)

    async def remove(self, path: Parts) -> None:
        self.writable()
        await asyncio.to_thread(self._remove, path)


WRITE_BATCH = 4 * CHUNK  # bytes gathered from the connection before a thread writes them at once


async def _write_behind(fd: int, chunks: AsyncIterator[bytes]) -> None:
    """Write the chunks as they arrive, a batch at a time in a thread while the next batch is
    gathered: one thread hand-over per WRITE_BATCH rather than per network read (tens of KiB),
    with no copy. At most two batches are held."""
    batch: list[bytes] = []
    size = 0
    writing: asyncio.Future | None = None
    try:
        async for chunk in chunks:
            batch.append(chunk)
            size += len(chunk)
            if size >= WRITE_BATCH:
                if writing is not None:
                    await asyncio.shield(writing)  # a cancelled upload must not cancel the thread's task
                writing = asyncio.ensure_future(asyncio.to_thread(_write_all, fd, batch))
                batch, size = [], 0
        if writing is not None:
            await asyncio.shield(writing)
            writing = None
        if batch:
            await asyncio.to_thread(_write_all, fd, batch)
    finally:
        # The upload failed or was cancelled meanwhile: the thread's write ends before the caller
        # closes the descriptor (else a write could land in a file opened since under its number).
        while writing is not None and not writing.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(writing)
        if writing is not None and not writing.cancelled():
            writing.exception()  # seen: the upload's own error is the one reported


# Bytes per write(2). Measured on this kind of machine (ext4, Linux 6.18, memory shared with
# busy neighbours): writing a GiB into the page cache in writes of 256 KiB costs 0.25 s of
# kernel time every time; in writes of 1 MiB or more, now and then 0.5-2 s (and a third of the
# speed), as the kernel reaches for larger page-cache folios.
WRITE_SIZE = 256 * 1024


def _write_all(fd: int, batch: list[bytes]) -> None:
    for chunk in batch:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view[:WRITE_SIZE]) :]
