"""The data path to ports on another machine: OpenSSH's own forwarding.

asyncssh carries the platform's commands and files; the bytes of users' sessions go through
an OpenSSH master connection instead, because forwarding is where the time goes: at 8
concurrent connections asyncssh forwarded well under half of what OpenSSH does
(benchmarks/remote.py). One master per transport and process, started on first use with the
transport's key and pinned host keys, started again when it dies; each forward is a unix
socket in the platform's private tunnel directory, made by the master (mode 0600).

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
import ctypes
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import asyncssh

from rosetta.computing.errors import Unreachable

log = logging.getLogger(__name__)

HOST_ALIAS = "rosetta-resource"  # the name the pinned keys are filed under, whatever the address
MASTER_START_TIMEOUT = 15.0
CONTROL_TIMEOUT = 10.0  # for a command through a running master (a forward, the session)
PR_SET_PDEATHSIG = 1


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
    ) -> None:
        self._target = (host, port, username)
        self._private_key = private_key
        self._host_keys = host_keys
        self._directory = directory  # private to this forwarder: its control socket, key, forwards
        self._master: asyncio.subprocess.Process | None = None
        self._starting = asyncio.Lock()
        self._forwards: dict[tuple[str, int], str] = {}

    @property
    def _control(self) -> str:
        return str(self._directory / "control")

    async def reach(self, host: str, port: int) -> str:
        """A unix socket that leads to host:port; made once per master."""
        if self._master is None or self._master.returncode is not None:
            await self._start_master()
        known = self._forwards.get((host, port))
        if known is not None:
            return known
        path = str(self._directory / f"{len(self._forwards)}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        said = await _ssh("-S", self._control, "-O", "forward", "-L", f"{path}:{host}:{port}", "--", HOST_ALIAS)
        if said is not None:
            raise Unreachable(f"Cannot forward to {host}:{port} on {self._where}.", said)
        self._forwards[(host, port)] = path
        return path

    async def close(self) -> None:
        master, self._master = self._master, None
        if master is not None and master.returncode is None:
            master.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(master.wait(), 5)
        shutil.rmtree(self._directory, ignore_errors=True)

    @property
    def _where(self) -> str:
        host, port, username = self._target
        return f"{username}@{host}" + (f":{port}" if port != 22 else "")

    async def _start_master(self) -> None:
        async with self._starting:
            if self._master is not None and self._master.returncode is None:
                return
            self._forwards.clear()
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory.mkdir(mode=0o700, parents=True)
            key = self._write_private("key", self._private_key.export_private_key("openssh"))
            known = self._write_private("known_hosts", self._known_hosts())
            try:
                self._master = await asyncio.create_subprocess_exec(
                    *self._master_argv(key, known),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    preexec_fn=_die_with_parent,
                )
                await self._wait_until_up()
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(key)
            await self._run_a_session()

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

    async def _wait_until_up(self) -> None:
        """The control socket appears once the master has authenticated."""
        deadline = time.monotonic() + MASTER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self._master.returncode is not None:
                said = (await self._master.stderr.read()).decode(errors="replace").strip()
                raise Unreachable(f"OpenSSH could not connect to {self._where}: {said or 'it ended'}.", said)
            if os.path.exists(self._control):  # made (under a temporary name, then renamed) after login
                return
            await asyncio.sleep(0.02)
        await self.close()
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


def _die_with_parent() -> None:
    """In the child, before exec: the master ends when the process that started it does."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
