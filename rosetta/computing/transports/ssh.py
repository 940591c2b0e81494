"""Runs commands and reaches files and ports on another machine, over SSH (asyncssh).

One multiplexed connection per (host, port, account) and process, kept alive, reconnected
with backoff after a drop. The host is known by the keys an operator pinned: any other key
is refused. argv lists are quoted once, here, with shlex: no shell string is ever built from
user input. Ports on the machine are reached through OpenSSH's forwarding (openssh.py) to unix
sockets in a directory only the platform's account may open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import posixpath
import secrets
import shlex
import signal
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncssh
from django.core.exceptions import ValidationError

from rosetta.computing.contract import Address
from rosetta.computing.errors import Refused, Unreachable
from rosetta.computing.kinds import Kind
from rosetta.computing.transports.base import CommandResult, Transport, command_name
from rosetta.computing.transports.openssh import OpenSSHForwarder
from rosetta.core.paths import run_dir

log = logging.getLogger(__name__)
logging.getLogger("asyncssh").setLevel(logging.WARNING)  # it says every channel it opens at INFO

CONNECT_TIMEOUT = 10.0
KEEPALIVE_INTERVAL = 15.0  # seconds; three unanswered keepalives end the connection
RECONNECT_DELAYS = (1, 2, 5, 10, 30)  # seconds between attempts after a failure
MAX_CHANNELS = 8  # sshd's MaxSessions is 10 by default: leave room for an operator's own session
# A connection nothing used for this long is closed (the next use opens it again): the web
# process and the gateway reach resources for many users, each over a connection of their own.
IDLE_CLOSE = 600.0  # seconds
# Before a port is reached, the host must have answered lately: a host that stopped answering
# (its link down) would otherwise take a connection through the tunnel and keep it waiting until
# three keepalives go unanswered (45 s), then close it with nothing said.
ANSWERED_LATELY = 2.0  # seconds a reply from the host counts as proof that it answers
ANSWER_TIMEOUT = 3.0  # seconds the host is given to reply when asked
# AES-GCM first: OpenSSL does it in one call per packet with the CPU's AES instructions, a
# quarter of what ChaCha20-Poly1305 costs in asyncssh (it matters for files moved over SFTP).
ENCRYPTION = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
              "aes128-ctr", "aes192-ctr", "aes256-ctr")  # fmt: skip
# What the server may send before we acknowledge, and in how large packets: files read over
# SFTP arrive in fewer, larger packets (each decrypted and parsed in Python) and never wait for
# our window while the block before is sent on.
WINDOW = 8 * 1024 * 1024
MAX_PACKET = 256 * 1024


class HostKeyChanged(Refused):
    pass


class SSHTransport(Transport):
    def __init__(
        self, host: str, port: int, username: str, private_key: str, host_keys: Sequence[str], work_dir: str
    ) -> None:
        self.host, self.port, self.username = host, port, username
        self._client_key = asyncssh.import_private_key(private_key)
        self._host_keys = [asyncssh.import_public_key(line) for line in host_keys]
        self._work_dir = work_dir  # relative to the account's home unless absolute
        self.work_dir = work_dir
        self._connection: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._connecting = asyncio.Lock()
        self._channels = asyncio.Semaphore(MAX_CHANNELS)
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: Unreachable | None = None
        self._forwarder: OpenSSHForwarder | None = None
        self._started: set[asyncio.Future] = set()  # long-lived processes, until their channel closes
        self._open_channels = 0
        self._last_used = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_loop: asyncio.AbstractEventLoop | None = None
        self._answered_at = 0.0  # monotonic time of the host's latest reply to ``_answering``
        self._asking: asyncio.Future | None = None  # the question in flight (or its answer, lately)
        self._asked_at = 0.0

    @property
    def where(self) -> str:
        return f"{self.username}@{self.host}" + (f":{self.port}" if self.port != 22 else "")

    # -- the connection ------------------------------------------------------------------------

    async def connection(self) -> asyncssh.SSHClientConnection:
        self._used()
        async with self._connecting:
            if self._connection is not None and not self._connection.is_closed():
                return self._connection
            if time.monotonic() < self._retry_at and self._last_error is not None:
                raise self._last_error  # do not hammer a host that just failed
            try:
                self._connection = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT)
                self._sftp = None
                self._failures = 0
                home = await (await self._sftp_client()).realpath(".")
                self.work_dir = posixpath.join(home, self._work_dir)
                return self._connection
            except asyncssh.HostKeyNotVerifiable as error:
                raise self._failed(HostKeyChanged(self._changed_key_message(), str(error))) from error
            except asyncssh.PermissionDenied as error:
                raise self._failed(Refused(f"{self.where} refused the platform's key.", str(error))) from error
            except (OSError, TimeoutError, asyncssh.Error) as error:
                message = f"Cannot connect to {self.where}: {error or 'no answer'}."
                raise self._failed(Unreachable(message, repr(error))) from error

    def _used(self) -> None:
        self._last_used = time.monotonic()
        loop = asyncio.get_running_loop()
        if self._idle_timer is None or self._idle_loop is not loop:  # a loop of its own: asyncio.run, a test's
            self._idle_loop = loop
            self._idle_timer = loop.call_later(IDLE_CLOSE, self._close_if_idle)

    def _close_if_idle(self) -> None:
        """Close the connection once nothing has used it for IDLE_CLOSE and no channel is open
        (a command, a stream, a storage helper); else look again when that could be."""
        self._idle_timer = None
        if self._connection is None:
            return
        idle = time.monotonic() - self._last_used
        if self._open_channels or idle < IDLE_CLOSE:
            self._idle_timer = asyncio.get_running_loop().call_later(max(1.0, IDLE_CLOSE - idle), self._close_if_idle)
            return
        log.info("ssh %s: closing the connection, unused for %.0f s", self.where, idle)
        self._connection.close()
        self._connection, self._sftp = None, None

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[None]:
        async with self._channels:
            self._open_channels += 1
            try:
                yield
            finally:
                self._open_channels -= 1
                self._last_used = time.monotonic()

    async def _connect(self) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            self.host,
            self.port,
            username=self.username,
            client_keys=[self._client_key],
            known_hosts=(self._host_keys, [], []),
            config=None,
            agent_path=None,
            keepalive_interval=KEEPALIVE_INTERVAL,
            keepalive_count_max=3,
            encryption_algs=ENCRYPTION,
            window=WINDOW,
            max_pktsize=MAX_PACKET,
        )

    def _failed(self, error: Refused | Unreachable) -> Unreachable:
        delay = RECONNECT_DELAYS[min(self._failures, len(RECONNECT_DELAYS) - 1)]
        self._failures += 1
        self._retry_at = time.monotonic() + delay
        # A refusal (a changed host key, a key no longer authorised) is reported as the resource
        # not answering: tasks there are left as they are, and it recovers when fixed.
        self._last_error = error if isinstance(error, Unreachable) else Unreachable(str(error), error.detail)
        log.warning("ssh %s: %s", self.where, error)
        return self._last_error

    def _changed_key_message(self) -> str:
        pinned = ", ".join(key.get_fingerprint("sha256") for key in self._host_keys)
        return (
            f"The host key of {self.host} is not the one pinned for it ({pinned}): Rosetta does not connect. "
            "If the host was reinstalled, an operator checks and pins its new key (rosetta resources check --pin)."
        )

    def _lost(self, error: BaseException) -> Unreachable:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        return Unreachable(f"The connection to {self.where} broke: {error or 'closed'}.", repr(error))

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            self._sftp = await self._connection.start_sftp_client()
        return self._sftp

    # -- commands ------------------------------------------------------------------------------

    async def run(self, argv: Sequence[str], *, timeout: float = 60.0, stdin: bytes | None = None) -> CommandResult:
        connection = await self.connection()
        async with self._channel():
            try:
                process = await connection.create_process(shlex.join(argv), encoding=None)
                try:
                    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout)
                except TimeoutError as error:
                    raise Unreachable(
                        f"{command_name(argv)} did not answer within {timeout:g} s on {self.host}."
                    ) from error
                finally:
                    process.close()
            except (OSError, asyncssh.Error) as error:
                raise self._lost(error) from error
        status = process.exit_status if process.exit_status is not None else 128 + _signal_number(process)
        return CommandResult(tuple(argv), status, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[bytes]:
        connection = await self.connection()
        async with self._channel():
            try:
                process = await connection.create_process(shlex.join(argv), encoding=None, stderr=asyncssh.STDOUT)
            except (OSError, asyncssh.Error) as error:
                raise self._lost(error) from error
            try:
                while chunk := await process.stdout.read(65536):
                    yield chunk
            except (OSError, asyncssh.Error) as error:
                raise self._lost(error) from error
            finally:
                process.close()

    async def start(self, argv: Sequence[str]) -> asyncssh.SSHClientProcess:
        """A long-lived process there that talks bytes on its standard input and output (the
        storages' file helper). It holds one of the connection's channels until it is closed."""
        connection = await self.connection()
        await self._channels.acquire()
        self._open_channels += 1
        try:
            process = await connection.create_process(shlex.join(argv), encoding=None)
        except BaseException as error:
            self._open_channels -= 1
            self._channels.release()
            if isinstance(error, (OSError, asyncssh.Error)):
                raise self._lost(error) from error
            raise
        closed = asyncio.ensure_future(process.wait_closed())
        self._started.add(closed)
        closed.add_done_callback(self._process_closed)
        return process

    def _process_closed(self, closed: asyncio.Future) -> None:
        self._started.discard(closed)
        self._open_channels -= 1
        self._last_used = time.monotonic()
        self._channels.release()

    # -- files ---------------------------------------------------------------------------------

    async def read_file(self, path: str) -> bytes | None:
        sftp = await self._files()
        try:
            async with sftp.open(path, "rb") as handle:
                return await handle.read()
        except asyncssh.SFTPNoSuchFile:
            return None
        except (OSError, asyncssh.Error) as error:
            raise self._lost(error) from error

    async def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        sftp = await self._files()
        temporary = f"{path}.{secrets.token_hex(4)}.part"
        try:
            await sftp.makedirs(
                posixpath.dirname(path) or ".", attrs=asyncssh.SFTPAttrs(permissions=0o700), exist_ok=True
            )
            async with sftp.open(temporary, "wb", asyncssh.SFTPAttrs(permissions=mode)) as handle:
                await handle.write(data)
            await sftp.posix_rename(temporary, path)
        except (OSError, asyncssh.Error) as error:
            with contextlib.suppress(OSError, asyncssh.Error):
                await sftp.remove(temporary)
            raise self._lost(error) from error

    async def remove_file(self, path: str) -> None:
        sftp = await self._files()
        try:
            await sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            pass
        except (OSError, asyncssh.Error) as error:
            raise self._lost(error) from error

    async def sftp(self) -> asyncssh.SFTPClient:
        """The connection's SFTP session (storages on this machine use it)."""
        return await self._files()

    def lost(self, error: BaseException) -> Unreachable:
        """Forget a connection an operation found broken; what to raise about it."""
        return self._lost(error)

    async def _files(self) -> asyncssh.SFTPClient:
        await self.connection()
        try:
            return await self._sftp_client()
        except (OSError, asyncssh.Error) as error:
            raise self._lost(error) from error

    # -- ports ---------------------------------------------------------------------------------

    async def reach(self, host: str, port: int) -> Address:
        """A unix socket here that leads to host:port as the remote machine sees it, through
        OpenSSH (see openssh.py); the host key and the account are checked first, here, and
        that the host still answers (Unreachable, saying so, within ANSWER_TIMEOUT if not)."""
        await self.connection()
        await self._answering()
        if self._forwarder is None:
            self._forwarder = OpenSSHForwarder(
                host=self.host,
                port=self.port,
                username=self.username,
                private_key=self._client_key,
                host_keys=self._host_keys,
                directory=_tunnel_dir() / secrets.token_hex(4),
            )
        return await self._forwarder.reach(host, port)

    async def _answering(self) -> None:
        """Return once the host has answered within ANSWERED_LATELY, asking it if needed: one
        question at a time, shared by concurrent callers; a recent failure is the answer."""
        now = time.monotonic()
        if now - self._answered_at < ANSWERED_LATELY:
            return
        if self._asking is None or (self._asking.done() and now - self._asked_at >= ANSWERED_LATELY):
            self._asked_at = now
            self._asking = asyncio.ensure_future(self._ask())
            self._asking.add_done_callback(lambda asked: asked.cancelled() or asked.exception())
        await asyncio.shield(self._asking)

    async def _ask(self) -> None:
        """One round trip on the connection's open SFTP channel (no new channel, no process there)."""
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await (await self._sftp_client()).realpath(".")
        except TimeoutError:
            raise Unreachable(
                f"{self.host} is not answering (no reply within {ANSWER_TIMEOUT:g} s): the machine or "
                "its network is down, or it is overloaded.",
            ) from None
        except (OSError, asyncssh.Error) as error:
            raise self._lost(error) from error
        self._answered_at = time.monotonic()

    async def close(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._forwarder is not None:
            await self._forwarder.close()
            self._forwarder = None
        if self._connection is not None:
            self._connection.close()
            with contextlib.suppress(Exception):
                await self._connection.wait_closed()
        self._connection = None


SOCKET_PATH_MAX = 107  # bytes in a unix socket's address
FORWARDER_PATH = len("/0123abcd/control.0123456789abcdef")  # what a forwarder adds (OpenSSH's temporary name)


def _tunnel_dir() -> Path:
    """Where the forwards' sockets live: the run directory, or where its path is too long for a
    socket address, a private directory of this account's under /tmp named after it."""
    path = run_dir() / "t"
    if len(str(path)) + FORWARDER_PATH > SOCKET_PATH_MAX:
        path = Path("/tmp") / f"rosetta-{os.geteuid()}-{hashlib.sha256(str(run_dir()).encode()).hexdigest()[:12]}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        found = path.lstat()
        if found.st_uid != os.geteuid() or not path.is_dir() or path.is_symlink():
            raise Refused(f"{path} belongs to someone else: Rosetta will not put its tunnels there.") from None
    path.chmod(0o700)
    return path


def _signal_number(process: asyncssh.SSHClientProcess) -> int:
    name = (process.exit_signal or ("KILL",))[0]
    return getattr(signal, f"SIG{name}", signal.SIGKILL).value


HOST_KEY_PREFERENCE = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256")  # the strongest first


def _ssh(resource, user) -> SSHTransport:
    username, private_key = resource.account_for(user)
    return SSHTransport(
        resource.host, resource.port, username, private_key, resource.host_keys.splitlines(), resource.work_dir
    )


def _validate(resource, combination) -> None:
    if not resource.host:
        raise ValidationError("A resource reached over SSH needs a host.")
    if resource.credentials == "service" and not (resource.username and resource.private_key):
        raise ValidationError("A service account needs a user name and a private key.")


async def _precheck(resource, report, pin) -> bool:
    """Read the host's key and compare it with the pinned ones (pin it first when asked)."""
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(resource.host, resource.port, server_host_key_algs=HOST_KEY_PREFERENCE), 15
        )
    except (OSError, TimeoutError, asyncssh.Error) as error:
        report.reachable = False
        report.problems.append(f"Cannot reach {resource.host}:{resource.port}: {error or 'no answer'}.")
        return False
    report.host_key = key.get_fingerprint("sha256")
    line = key.export_public_key().decode().strip()
    if pin is not None:
        await pin(line)
    report.pinned = line in resource.host_keys.splitlines()
    if not report.pinned:
        report.problems.append("The host key is not pinned: check it, then pin it (rosetta resources check --pin).")
    return report.pinned


KIND = Kind("transport", "ssh", "A machine reached over SSH", _ssh, validate=_validate, precheck=_precheck)
