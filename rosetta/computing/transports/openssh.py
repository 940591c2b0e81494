"""The data path to ports on another machine: OpenSSH's own forwarding.

asyncssh carries the platform's commands and files; the bytes of users' sessions go through
an OpenSSH master connection instead, because forwarding is where the time goes: at 8
concurrent connections asyncssh forwarded well under half of what OpenSSH does
(benchmarks/remote.py). One master per transport and process, started on first use with the
transport's key and pinned host keys, started again when it dies; each forward is a unix
socket in the platform's private tunnel directory, made by the master (mode 0600).

Callers come concurrently (the gateway opens many tasks at once): they share one start of the
master and one forward per target, each socket's name is taken once and never again, and a
failed start or forward is forgotten so that the next call tries again. The forwards kept are
bounded: beyond MAX_FORWARDS the least recently used is cancelled (``ssh -O cancel``), and
reached again later it is simply forwarded anew.

The private key touches the disk only while the master authenticates: a 0600 file in a 0700
directory of the platform's account, removed as soon as the master is up.

Once up, the master runs one short session (`true`), because sshd turns Nagle's algorithm off
on a connection only when a session starts there (before OpenSSH 10.1: session.c calls
ssh_packet_set_interactive, which sets TCP_NODELAY; Debian 12 has 9.2). A
connection that only forwards keeps Nagle on: each small packet sshd sends back — a response,
then the EOF that ends it — waits for the client's delayed ACK, and a request through the tunnel
took 5–10 ms instead of 1 (benchmarks/remote.py, c=1: 0.13× `ssh -L`, whose connection had run
a command). The setting lasts for the connection's life.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import time
from collections import OrderedDict
from pathlib import Path

import asyncssh

from rosetta.computing.errors import Unreachable
from rosetta.core.processes import dies_with_parent

log = logging.getLogger(__name__)

HOST_ALIAS = "rosetta-resource"  # the name the pinned keys are filed under, whatever the address
MASTER_START_TIMEOUT = 15.0
CONTROL_TIMEOUT = 10.0  # for a command through a running master (a forward, the session)
# Forwards kept per master: more than one account's tasks running at once on one resource,
# so that a forward is made once per task and not per connection; each kept one costs a
# listening socket in the master.
MAX_FORWARDS = 256


class OpenSSHForwarder:
    """Forwards from unix sockets here to ports as one account on one machine sees them."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        private_key: asyncssh.SSHKey,
        host_keys: list[asyncssh.SSHKey],
        directory: Path,
        max_forwards: int = MAX_FORWARDS,
    ) -> None:
        self._target = (host, port, username)
        self._private_key = private_key
        self._host_keys = host_keys
        self._directory = directory  # private to this forwarder: its control socket, key, forwards
        self._master: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task | None = None  # the one start under way, shared by its callers
        # (host, port) -> the socket's path once forwarded; the least recently used first.
        self._forwards: OrderedDict[tuple[str, int], asyncio.Future[str]] = OrderedDict()
        self._max_forwards = max_forwards
        self._names = itertools.count()  # sockets' names: taken without a pause, never reused
        self._cancelling: set[asyncio.Task] = set()

    @property
    def _control(self) -> str:
        return str(self._directory / "control")

    async def reach(self, host: str, port: int) -> str:
        """A unix socket that leads to host:port: one forward per target and master, which
        concurrent callers share."""
        await self._master_up()
        target = (host, port)
        forward = self._forwards.get(target)
        if forward is None:
            # Between the look-up and the insertion nothing awaits: a second caller finds this one.
            path = str(self._directory / f"{next(self._names)}.sock")
            forward = self._forwards[target] = asyncio.ensure_future(self._forward(path, host, port))
            forward.add_done_callback(lambda done: self._settled(target, done))
            self._forget_least_used()
        else:
            self._forwards.move_to_end(target)
        return await asyncio.shield(forward)  # one caller giving up does not undo it for the others

    async def _forward(self, path: str, host: str, port: int) -> str:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        said = await _ssh("-S", self._control, "-O", "forward", "-L", f"{path}:{host}:{port}", "--", HOST_ALIAS)
        if said is not None:
            raise Unreachable(f"Cannot forward to {host}:{port} on {self._where}.", said)
        return path

    def _settled(self, target: tuple[str, int], forward: asyncio.Future) -> None:
        """A failed forward is forgotten: the next call for its target tries again."""
        failed = forward.cancelled() or forward.exception() is not None
        if failed and self._forwards.get(target) is forward:
            del self._forwards[target]

    def _forget_least_used(self) -> None:
        while len(self._forwards) > self._max_forwards:
            target, forward = self._forwards.popitem(last=False)
            forward.add_done_callback(lambda done, target=target: self._cancel(target, done))

    def _cancel(self, target: tuple[str, int], forward: asyncio.Future) -> None:
        if forward.cancelled() or forward.exception() is not None:
            return
        cancelling = asyncio.ensure_future(self._cancel_forward(forward.result(), *target))
        self._cancelling.add(cancelling)
        cancelling.add_done_callback(self._cancelling.discard)

    async def _cancel_forward(self, path: str, host: str, port: int) -> None:
        """Connections already made through the socket go on; new ones find no socket."""
        said = await _ssh("-S", self._control, "-O", "cancel", "-L", f"{path}:{host}:{port}", "--", HOST_ALIAS)
        if said is not None:
            log.info("ssh %s: cancelling the forward to %s:%s: %s", self._where, host, port, said)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def close(self) -> None:
        for task in [self._starting, *self._forwards.values(), *self._cancelling]:
            if task is not None:
                task.cancel()
        self._starting = None
        self._forwards.clear()
        await self._stop_master()
        shutil.rmtree(self._directory, ignore_errors=True)

    async def _stop_master(self) -> None:
        master, self._master = self._master, None
        if master is not None:
            await _stop(master)

    @property
    def _where(self) -> str:
        host, port, username = self._target
        return f"{username}@{host}" + (f":{port}" if port != 22 else "")

    async def _master_up(self) -> None:
        """The master runs: callers that come while it starts wait for that same start; after a
        failed one (or once it died) the next caller starts it again."""
        if self._master is not None and self._master.returncode is None:
            return
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start_master())
            self._starting.add_done_callback(_retrieved)
        await asyncio.shield(self._starting)

    async def _start_master(self) -> None:
        """Known as the master (``self._master``) only once it is up: until then callers wait."""
        await self._stop_master()
        self._forwards.clear()  # the old master's sockets went with it
        shutil.rmtree(self._directory, ignore_errors=True)
        self._directory.mkdir(mode=0o700, parents=True)
        key = self._write_private("key", self._private_key.export_private_key("openssh"))
        known = self._write_private("known_hosts", self._known_hosts())
        try:
            master = await asyncio.create_subprocess_exec(
                *dies_with_parent(self._master_argv(key, known)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                await self._wait_until_up(master)
                await self._run_a_session()
            except BaseException:
                await _stop(master)
                raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(key)
        self._master = master

    def _master_argv(self, key: Path, known: Path) -> list[str]:
        host, port, username = self._target
        options = {
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "BatchMode": "yes",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(known),
            "GlobalKnownHostsFile": "/dev/null",
            "HostKeyAlias": HOST_ALIAS,
            "ControlPersist": "no",
            "ServerAliveInterval": "15",
            "ServerAliveCountMax": "3",
            "ConnectTimeout": "10",
            "ExitOnForwardFailure": "yes",
            "StreamLocalBindUnlink": "yes",
            "LogLevel": "ERROR",
        }
        argv = ["ssh", "-F", "/dev/null", "-M", "-N", "-S", self._control, "-i", str(key)]
        for name, value in options.items():
            argv += ["-o", f"{name}={value}"]
        return [*argv, "-p", str(port), "-l", username, "--", host]

    async def _wait_until_up(self, master: asyncio.subprocess.Process) -> None:
        """The control socket appears once the master has authenticated."""
        deadline = time.monotonic() + MASTER_START_TIMEOUT
        while time.monotonic() < deadline:
            if master.returncode is not None:
                said = (await master.stderr.read()).decode(errors="replace").strip()
                raise Unreachable(f"OpenSSH could not connect to {self._where}: {said or 'it ended'}.", said)
            if os.path.exists(self._control):  # made (under a temporary name, then renamed) after login
                return
            await asyncio.sleep(0.02)
        raise Unreachable(f"OpenSSH did not connect to {self._where} within {MASTER_START_TIMEOUT:.0f} s.")

    async def _run_a_session(self) -> None:
        """One command through the master, so that sshd sends without delay (see above). Forwards
        work without it, only slower: a refusal is logged, not raised."""
        said = await _ssh("-S", self._control, "-T", "--", HOST_ALIAS, "true")
        if said is not None:
            log.warning("ssh %s: a session through the tunnel's connection failed (tunnels will be slower): %s",
                        self._where, said)  # fmt: skip

    def _known_hosts(self) -> bytes:
        return b"".join(
            HOST_ALIAS.encode() + b" " + key.export_public_key("openssh").strip() + b"\n" for key in self._host_keys
        )

    def _write_private(self, name: str, data: bytes) -> Path:
        path = self._directory / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        return path


async def _ssh(*argv: str) -> str | None:
    """Run OpenSSH through a master (a control command, or a command there); None when it
    worked, else what it said. ProxyCommand=false: if the master is gone, it fails rather than
    connect by itself."""
    process = await asyncio.create_subprocess_exec(
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "ProxyCommand=false",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, said = await asyncio.wait_for(process.communicate(), CONTROL_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return f"no answer within {CONTROL_TIMEOUT:g} s"
    except asyncio.CancelledError:  # whoever waited gave up: leave no client behind
        process.kill()
        raise
    return None if process.returncode == 0 else said.decode(errors="replace").strip()


async def _stop(master: asyncio.subprocess.Process) -> None:
    if master.returncode is None:
        master.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(master.wait(), 5)


def _retrieved(task: asyncio.Task) -> None:
    """Mark a shared task's failure as seen: its callers may all have given up waiting."""
    if not task.cancelled():
        task.exception()
