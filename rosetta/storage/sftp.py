"""Files on another machine, through the resource's SSH connection (as the user's own account
where each user is one there, so what is created is theirs).

SFTP cannot confine a path: it has no openat, so whatever checks a path (the server's
realpath) and whatever then uses it resolve it twice, and a task of the same account that
swaps a folder for a symbolic link in between is let through — into another user's folder,
or the platform's own. So the files are served there by a small helper program of the
platform's (rosetta.storage.descriptors, Python 3 and its standard library), started over
the connection, that resolves every path from the root's descriptor one component at a time
with O_NOFOLLOW, as this machine's storages do. A few helpers per connection stay up while
in use, each serving one request at a time; file contents stream through them in large frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
import re
import struct
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncssh

from rosetta.computing.errors import ComputingError
from rosetta.computing.transports.ssh import SSHTransport
from rosetta.storage import descriptors
from rosetta.storage.errors import AlreadyExists, NoSuchFile, PathRefused, StorageFull, StorageUnreachable
from rosetta.storage.files import CHUNK, Entry, Files, Parts, batched

HELPER = Path(descriptors.__file__).read_bytes()
# One line whatever the account's shell: the helper's text follows on standard input.
BOOTSTRAP = f"import sys; exec(compile(sys.stdin.buffer.read({len(HELPER)}), 'rosetta-files', 'exec'))"
ARGV = ("python3", "-I", "-S", "-c", BOOTSTRAP)
HEADER = struct.Struct(">cI")
POOL = 4  # helpers at once per connection: as many storage requests run together, the others wait
IDLE = 30.0  # seconds an unused helper stays up (it holds one of the connection's channels)
# An upload's bytes the connection may hold before the next are read from the client: the
# client's next megabytes arrive while the last ones are on their way (asyncssh's default,
# 64 KiB, left the link idle between each frame and the next: a third slower).
WRITE_AHEAD = 4 * CHUNK

PROBLEMS = {"nofile": NoSuchFile, "refused": PathRefused, "exists": AlreadyExists, "full": StorageFull}


class Broken(Exception):
    """The helper or its channel failed: it is not used again."""


class Helper:
    """One helper process on the machine, in step with the platform one request at a time."""

    def __init__(self, process: asyncssh.SSHClientProcess) -> None:
        self.process = process
        self.broken = False
        self.used = time.monotonic()
        process.channel.set_write_buffer_limits(high=WRITE_AHEAD, low=WRITE_AHEAD // 2)

    async def receive(self) -> tuple[bytes, bytes]:
        try:
            kind, length = HEADER.unpack(await self.process.stdout.readexactly(HEADER.size))
            return kind, await self.process.stdout.readexactly(length) if length else b""
        except (OSError, asyncssh.Error, asyncio.IncompleteReadError) as error:
            self.broken = True
            raise Broken(str(error) or "the helper stopped") from None

    async def reply(self) -> dict:
        """The next reply; a problem the helper reports is raised as the user sees it."""
        kind, payload = await self.receive()
        if kind != b"J":
            self.broken = True
            raise Broken(f"the helper sent {kind!r} where a reply was due")
        answer = json.loads(payload)
        if "error" in answer:
            raise PROBLEMS.get(answer["error"], PathRefused)(answer["message"])
        return answer

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        try:
            self.process.stdin.write(HEADER.pack(kind, len(payload)))
            if payload:
                self.process.stdin.write(payload)
        except (OSError, asyncssh.Error) as error:
            self.broken = True
            raise Broken(str(error)) from None

    async def drain(self) -> None:
        try:
            await self.process.stdin.drain()
        except (OSError, asyncssh.Error) as error:
            self.broken = True
            raise Broken(str(error)) from None

    async def ask(self, request: dict) -> dict:
        self.send(b"J", json.dumps(request).encode())
        return await self.reply()

    def close(self) -> None:
        self.broken = True
        self.process.close()


class Helpers:
    """The helpers of one connection: up to POOL, started when needed, ended when idle."""

    def __init__(self, transport: SSHTransport) -> None:
        self._transport = weakref.ref(transport)  # the pool lives as long as its transport, no longer
        self.idle: list[Helper] = []
        self.slots = asyncio.Semaphore(POOL)
        self._reaper: asyncio.TimerHandle | None = None

    async def take(self) -> tuple[Helper, bool]:
        """(a helper, whether it served before): the caller gives it back with ``give``."""
        await self.slots.acquire()
        try:
            while self.idle:
                helper = self.idle.pop()
                if not helper.process.is_closing():
                    return helper, True
            return await self._start(), False
        except BaseException:
            self.slots.release()
            raise

    def give(self, helper: Helper) -> None:
        if helper.broken or helper.process.is_closing():
            helper.close()
        else:
            helper.used = time.monotonic()
            self.idle.append(helper)
            if self._reaper is None:
                self._reaper = asyncio.get_running_loop().call_later(IDLE, self._reap)
        self.slots.release()

    def _reap(self) -> None:
        self._reaper = None
        now = time.monotonic()
        for helper in [h for h in self.idle if now - h.used >= IDLE]:
            self.idle.remove(helper)
            helper.close()
        if self.idle:
            self._reaper = asyncio.get_running_loop().call_later(IDLE, self._reap)

    async def _start(self) -> Helper:
        transport = self._transport()
        try:
            process = await transport.start(ARGV)
        except ComputingError as error:
            raise StorageUnreachable(str(error)) from None
        helper = Helper(process)
        try:
            process.stdin.write(HELPER)
            hello = await helper.reply()
        except (Broken, OSError, asyncssh.Error):
            helper.close()
            said = await _said(process)
            raise StorageUnreachable(
                f"Rosetta's file helper did not start on {transport.where} (it needs python3, version 3.6 "
                f"or later, on the account's PATH there){': ' + said if said else '.'}"
            ) from None
        if "hello" not in hello:
            helper.close()
            raise StorageUnreachable(f"Rosetta's file helper on {transport.where} did not answer as expected.")
        return helper


async def _said(process: asyncssh.SSHClientProcess) -> str:
    """The end of what a failed helper wrote on its standard error."""
    with contextlib.suppress(Exception):
        text = await asyncio.wait_for(process.stderr.read(4096), 2)
        return text.decode(errors="replace").strip().splitlines()[-1][-300:]
    return ""


async def _frames(helper: Helper) -> AsyncIterator[bytes]:
    """What a helper streams (a file's content, a walk's folders) up to its end; a reply
    instead is the error that ends it. Left before the end, the helper is out of step."""
    finished = False
    try:
        while True:
            kind, data = await helper.receive()
            if kind == b"E":
                finished = True
                return
            if kind != b"D":
                finished = True
                answer = json.loads(data)
                raise PROBLEMS.get(answer.get("error"), PathRefused)(answer.get("message", "The storage refused."))
            yield data
    finally:
        if not finished:
            helper.broken = True


_pools: weakref.WeakKeyDictionary[SSHTransport, tuple[asyncio.AbstractEventLoop, Helpers]] = weakref.WeakKeyDictionary()


def helpers_of(transport: SSHTransport) -> Helpers:
    """The one pool of helpers of a connection (per event loop: its locks belong to one)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(transport)
    if found is None or found[0] is not loop:
        found = _pools[transport] = (loop, Helpers(transport))
    return found[1]


def fixed_part(base_path: str) -> str:
    """The part of a storage's base path before the first folder named after the user: the
    operator's, opened as it is given; the folders from there are opened without following
    links (a user may not swap them)."""
    fixed = []
    for part in base_path.split("/"):
        if "{username}" in part:
            break
        fixed.append(part)
    return posixpath.normpath("/".join(fixed) or "/")


def platform_folders(storage) -> list[str]:
    """The work directories of the resources that serve or mount a storage: the platform's
    folders there, which no user's folder of it may be inside, be, or hold."""
    resources = [storage.resource, *storage.mountable_on.all()]
    return [resource.work_dir for resource in resources if resource is not None and resource.transport == "ssh"]


def may_meet(base_path: str, folder: str) -> bool:
    """Whether some user's folder of a storage at ``base_path`` could be inside, be, or hold
    ``folder`` (absolute), as far as the paths tell ({username} may be any one name)."""
    pattern = [part for part in posixpath.normpath(base_path).split("/") if part]
    found = [part for part in posixpath.normpath(folder).split("/") if part]
    for wanted, part in zip(pattern, found, strict=False):
        matching = re.escape(wanted).replace(re.escape("{username}"), "[^/]+")
        if not re.fullmatch(matching, part):
            return False
    return True  # one is the other, or holds it


class SFTPFiles(Files):
    def __init__(self, transport: SSHTransport, root: str, read_only: bool,
                 fixed: str | None = None, platform: Sequence[str] = ()) -> None:  # fmt: skip
        """``fixed``: the operator's part of the root (see fixed_part); ``platform``: the
        platform's own folders there (work directories, absolute or under the account's home)."""
        super().__init__(root, read_only)
        self.transport = transport
        self.platform = list(platform)
        anchor = fixed or root
        below = posixpath.relpath(root, anchor).split("/") if root != anchor else []
        if ".." in below or not root.startswith("/"):
            raise PathRefused("This storage's folder is not under its base path: an operator checks it.")
        self._root = {"anchor": anchor, "below": below, "create": not read_only}

    def _request(self, op: str, **fields) -> dict:
        # The platform's folder there is known once connected (it is under the account's home).
        return {"op": op, "root": {**self._root, "platform": [*self.platform, self.transport.work_dir]}, **fields}

    @contextlib.asynccontextmanager
    async def _helper(self, op: str, **fields) -> AsyncIterator[tuple[Helper, dict]]:
        """A helper and its first reply to the request; a helper found dead before it answered
        (its connection dropped while it was idle) is replaced once."""
        pool = helpers_of(self.transport)
        for attempt in (1, 2):
            helper, reused = await pool.take()
            try:
                try:
                    first = await helper.ask(self._request(op, **fields))
                except Broken as error:
                    if reused and attempt == 1:
                        continue
                    raise StorageUnreachable(self._lost(error)) from None
                yield helper, first
                return
            except (asyncio.CancelledError, GeneratorExit):
                helper.broken = True  # mid-exchange: out of step
                raise
            except Broken as error:
                raise StorageUnreachable(self._lost(error)) from None
            finally:
                pool.give(helper)

    def _lost(self, error: Exception) -> str:
        return f"The connection to {self.transport.where} broke: {error}."

    def _entry(self, fields: list) -> Entry:
        name, kind, size, modified, target = fields
        return Entry(name, kind, size, float(modified), target)

    # -- the interface ---------------------------------------------------------------------

    async def list(self, path: Parts) -> list[Entry]:
        async with self._helper("list", path=list(path)) as (_, reply):
            return [self._entry(fields) for fields in reply["entries"]]

    async def stat(self, path: Parts) -> Entry:
        async with self._helper("stat", path=list(path)) as (_, reply):
            return self._entry(reply["entry"])

    async def open(self, path: Parts) -> tuple[Entry, AsyncIterator[bytes]]:
        content = self._content(path)
        entry = await anext(content)
        return entry, content

    async def _content(self, path: Parts) -> AsyncIterator:
        """The entry as opened, then the file's bytes: the helper sends exactly the size it
        found at open, or an error (never a shorter file without saying so)."""
        async with self._helper("read", path=list(path)) as (helper, reply):
            yield self._entry(reply["entry"])
            async for data in _frames(helper):
                yield data

    async def walk(self, path: Parts) -> AsyncIterator[tuple[Parts, Entry]]:
        """As Files.walk, in one request: the helper walks the folder by descriptors."""
        async with self._helper("walk", path=list(path)) as (helper, _):
            async for data in _frames(helper):
                below, entries = json.loads(data)
                for fields in entries:
                    yield (*below, fields[0]), self._entry(fields)

    async def write(self, path: Parts, chunks: AsyncIterator[bytes], overwrite: bool = False) -> Entry:
        self.writable()
        async with self._helper("write", path=list(path), overwrite=overwrite) as (helper, _):
            answer = asyncio.ensure_future(helper.reply())
            try:
                failed = await self._send(helper, chunks, answer)
            except BaseException:
                helper.broken = True  # cancelled or broken mid-body: out of step
                answer.cancel()
                raise
            if failed is not None:  # the body ended on this side: the helper dropped its temporary
                with contextlib.suppress(AlreadyExists, NoSuchFile, PathRefused, StorageFull):
                    await answer
                raise failed
            return self._entry((await answer)["entry"])

    @staticmethod
    async def _send(helper: Helper, chunks: AsyncIterator[bytes], answer: asyncio.Future) -> Exception | None:
        """Send the body in large frames, then its end; or stop at the helper's early answer (a
        refusal: a full disk) or when the body fails on this side (the client went away),
        telling the helper to drop what it wrote. The helper answers each write once."""
        body = aiter(batched(chunks, CHUNK))
        while True:
            try:
                chunk = await anext(body)
            except StopAsyncIteration:
                break
            except Exception as error:
                helper.send(b"A")
                return error
            if answer.done():
                break
            helper.send(b"D", chunk)
            await helper.drain()
        helper.send(b"A" if answer.done() else b"E")
        return None

    async def mkdir(self, path: Parts) -> None:
        self.writable()
        async with self._helper("mkdir", path=list(path)):
            pass

    async def move(self, source: Parts, destination: Parts) -> None:
        self.writable()
        async with self._helper("move", source=list(source), destination=list(destination)):
            pass

    async def copy(self, source: Parts, destination: Parts) -> None:
        self.writable()
        async with self._helper("copy", source=list(source), destination=list(destination)):
            pass

    async def remove(self, path: Parts) -> None:
        self.writable()
        async with self._helper("remove", path=list(path)):
            pass
