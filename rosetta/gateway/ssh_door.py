"""The SSH front door: one SSH port of the platform, a jump host to users' SSH tasks.

``ssh -J ada@door:2222 rosetta@t1234`` makes OpenSSH log in to the door as ada, then open a
``direct-tcpip`` channel to "t1234" (port 22, or whatever -p says) and speak SSH through it to
the task's own sshd, end to end: the door never sees what goes on inside. So the door checks
two things only, and does nothing else:

- who connects: a public key ada registered (rosetta.accounts.SSHKey), her account active;
- where to: a task she may reach (hers, or any if she is staff: rosetta.tasks.access, the rule
  of the HTTP gateway too), running, whose interface is SSH. The channel is then joined to the
  task's endpoint through the connector the HTTP gateway uses (directly on this machine, an
  SSH forward over the resource's connection elsewhere). The port the client names is ignored:
  a task has one SSH interface. The destination's first label is the task id, so
  ``t1234.rosetta`` (a ~/.ssh/config pattern) works as well as ``t1234``.

No shell, no command, no subsystem (a session only says how to use the door), no remote or
unix-socket forwarding, no agent or X11 forwarding at the door itself (``ssh -X`` goes end to
end to the task). The database is asked at each login and each channel — connections are
few and long, and a key removed or an account deactivated is then refused from the next
connection or channel on, with no signal to miss. Open connections are looked at again every
few seconds too: one whose key was removed, or whose user was deactivated, is ended.

A user is whom the login names, and the key must be one that user registered (keys are
unique per user, not across users: a public key is public, and registering someone else's
gains nothing without its private half). A connection may offer at most six keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncssh
from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.utils import timezone

from rosetta.computing.contract import Address
from rosetta.computing.errors import ComputingError
from rosetta.core import metrics
from rosetta.gateway.clients import cap_key
from rosetta.gateway.proxy import LISTEN_BACKLOG
from rosetta.tasks.access import may_reach

log = logging.getLogger(__name__)
logging.getLogger("asyncssh").setLevel(logging.WARNING)  # it logs every channel at INFO

TASK_LABEL = re.compile(r"[a-z0-9]{1,16}")
LAST_USED_PRECISION = timedelta(minutes=1)
db = sync_to_async  # ORM work runs in one thread of its own, off the event loop
WITHDRAWN = "Your key or account was withdrawn."


@dataclass
class DoorConfig:
    host_key: asyncssh.SSHKey
    address: str  # "host:port" users are told to use, for the door's own messages
    login_timeout: float = 30.0  # a connection must log in within this
    keepalive_interval: float = 30.0  # three unanswered keepalives end a connection
    max_connections: int = 2000
    max_connections_per_client: int = 64  # per client address (IPv6: per /64)
    max_auth_attempts: int = 6  # keys one connection may offer (OpenSSH's MaxAuthTries)
    recheck_interval: float = 2.0  # how often open connections' keys and accounts are looked at again
    drain_timeout: float = 600.0  # a replaced door lets open sessions go on this long


# -- what may pass: pure ---------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFacts:
    id: str
    owner_id: int
    phase: str
    protocol: str  # the software's interface protocol
    endpoint: tuple[str, int] | None


def task_id_from_destination(host: str) -> str | None:
    """The task a direct-tcpip destination names: its first label ("t1234", "t1234.rosetta")."""
    label = host.strip().rstrip(".").split(".", 1)[0].lower()
    return label if TASK_LABEL.fullmatch(label) else None


def refusal(task_id: str | None, task: TaskFacts | None, user_id: int, staff: bool = False) -> str | None:
    """Why ``user_id`` (``staff``: one of the platform's staff) may not reach the task (None:
    they may). A task they may not reach is answered exactly as a missing one: ids cannot be probed."""
    if task_id is None or task is None or not may_reach(user_id, task.owner_id, staff):
        return f"You have no task {task_id or '(none given)'}: give the id of one of your SSH tasks."
    if task.protocol != "ssh":
        return f"Task {task.id} has no SSH interface (it serves {task.protocol}); open it in the browser."
    if task.phase != "running":
        return f"Task {task.id} is {task.phase}; it can be reached once it is running."
    if task.endpoint is None:
        return f"Task {task.id} has no endpoint yet; try again in a moment."
    return None


# -- what the database says (run through ``db``) ---------------------------------------------------


def _key_holder(username: str, fingerprint: str) -> tuple[int, int, str] | None:
    """(user id, key id, key name) when ``username`` is active and registered this key."""
    from rosetta.accounts.models import SSHKey

    close_old_connections()  # a long-lived process: never a connection the database dropped
    row = (
        SSHKey.objects.filter(fingerprint=fingerprint, user__username=username, user__is_active=True)
        .values_list("user_id", "id", "name")
        .first()
    )
    return tuple(row) if row else None


def _usable_keys(key_ids: set[int]) -> set[int]:
    """Those of ``key_ids`` still registered, to users still active."""
    from rosetta.accounts.models import SSHKey

    close_old_connections()
    return set(SSHKey.objects.filter(pk__in=key_ids, user__is_active=True).values_list("pk", flat=True))


def _touch_key(key_id: int) -> None:
    from rosetta.accounts.models import SSHKey

    now = timezone.now()
    SSHKey.objects.filter(pk=key_id).exclude(last_used__gt=now - LAST_USED_PRECISION).update(last_used=now)


@dataclass(frozen=True)
class Plan:
    refusal: str | None
    task_id: str | None = None
    endpoint: tuple[str, int] | None = None
    reach: Callable[[str, int], Awaitable[Address]] | None = None  # None: connect to the endpoint as it is
    resource: str = ""


def _plan(key_id: int, user_id: int, task_id: str | None) -> Plan:
    """Whether the key still opens the door, and where the task listens."""
    from rosetta.accounts.models import SSHKey
    from rosetta.gateway.snapshot import connector
    from rosetta.tasks.models import Task

    close_old_connections()
    holder = SSHKey.objects.filter(pk=key_id, user_id=user_id, user__is_active=True)
    staff = holder.values_list("user__is_staff", flat=True).first()
    if staff is None:
        return Plan("Your key or account was withdrawn; log in again with a registered key.")
    task = Task.objects.select_related("software", "resource", "owner").filter(pk=task_id).first() if task_id else None
    facts = (
        TaskFacts(task.id, task.owner_id, task.phase, task.software.interface_protocol, task.endpoint)
        if task is not None
        else None
    )
    reason = refusal(task_id, facts, user_id, staff)
    if reason is not None:
        return Plan(reason)
    try:
        reach = connector(task.resource, task.owner)
    except ComputingError as error:  # the owner's account there is refused, say
        return Plan(f"Task {task.id} cannot be reached now: {error}")
    except Exception:
        log.exception("ssh door: cannot reach the tasks of resource %s", task.resource.name)
        return Plan(f"Task {task.id} cannot be reached now: its resource {task.resource.name} is not available.")
    return Plan(None, task.id, task.endpoint, reach, task.resource.name)


# -- the server -----------------------------------------------------------------------------------


class Door:
    """The listening sockets and what every connection shares: the limits, the open ones."""

    def __init__(self, config: DoorConfig) -> None:
        self.config = config
        self.connections: set[DoorConnection] = set()
        self.per_client: Counter[str] = Counter()
        self._acceptors: list[asyncssh.SSHAcceptor] = []
        self._recheck: asyncio.Task | None = None

    async def start(self, sockets: list[socket.socket]) -> None:
        config = self.config
        for sock in sockets:
            acceptor = await asyncssh.listen(
                sock=sock,
                backlog=LISTEN_BACKLOG,
                server_factory=lambda: DoorConnection(self),
                server_host_keys=[config.host_key],
                process_factory=self._explain,  # any session: shell, command, sftp, scp
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
                password_auth=False,
                kbdint_auth=False,
                gss_host=None,
                login_timeout=config.login_timeout,
                keepalive_interval=config.keepalive_interval,
                keepalive_count_max=3,
            )
            self._acceptors.append(acceptor)
            log.info("ssh door listening on %s", sock.getsockname())
        self._recheck = asyncio.create_task(self._end_withdrawn())

    async def _end_withdrawn(self) -> None:
        """Every few seconds, end the connections whose key was removed or whose user was
        deactivated since they logged in: their sessions on tasks end with them."""
        while True:
            await asyncio.sleep(self.config.recheck_interval)
            keys = {connection: connection.key_id for connection in self.connections if connection.key_id is not None}
            if not keys:
                continue
            try:
                usable = await db(_usable_keys)(set(keys.values()))
            except Exception:
                log.exception("ssh door: cannot check the keys of open connections; trying again")
                continue
            for connection, key_id in keys.items():
                if key_id not in usable and connection.key_id == key_id:  # not another key meanwhile
                    connection.withdraw()

    async def _explain(self, process: asyncssh.SSHServerProcess) -> None:
        user = process.get_extra_info("username") or "you"
        process.stderr.write(
            "This is Rosetta's SSH front door: it opens no shell here. It is a jump host to your SSH tasks:\r\n"
            f"    ssh -J {user}@{self.config.address} rosetta@TASK-ID\r\n"
            "The exact command is on each SSH task's page and in `rosetta task show TASK-ID`.\r\n"
        )
        process.exit(1)

    def admit(self, connection: DoorConnection) -> bool:
        config = self.config
        if (
            len(self.connections) >= config.max_connections
            or self.per_client[connection.cap_key] >= config.max_connections_per_client
        ):
            log.warning("ssh door: connection limit reached; refusing %s", connection.client)
            return False
        self.connections.add(connection)
        self.per_client[connection.cap_key] += 1
        return True

    def release(self, connection: DoorConnection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.per_client[connection.cap_key] -= 1
            if not self.per_client[connection.cap_key]:
                del self.per_client[connection.cap_key]

    async def drain(self, timeout: float) -> None:
        """Stop accepting; let open connections (sessions on tasks) go on up to ``timeout``."""
        for acceptor in self._acceptors:
            acceptor.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.connections and timeout > 0:
            log.info("ssh door: %d connections still open; waiting for them", len(self.connections))
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.2)
        for connection in list(self.connections):
            connection.close()
        if self._recheck is not None:
            self._recheck.cancel()
        for acceptor in self._acceptors:
            with contextlib.suppress(Exception):
                await acceptor.wait_closed()
        self._acceptors.clear()


class DoorConnection(asyncssh.SSHServer):
    """One client connection: its login, then the channels it opens."""

    def __init__(self, door: Door) -> None:
        self.door = door
        self.conn: asyncssh.SSHServerConnection | None = None
        self.client = "?"
        self.cap_key = "?"
        self.username = ""
        self.user_id: int | None = None
        self.key_id: int | None = None
        self.key_name = ""
        self.attempts = 0  # keys offered
        self.signature_due: str | None = None  # the key ssh queried and may now sign with
        self.logged_in = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.client = str(peer[0]) if peer else "?"
        self.cap_key = cap_key(self.client)  # an IPv6 client counts by its /64
        if not self.door.admit(self):
            asyncio.get_running_loop().call_soon(
                conn.disconnect, asyncssh.DISC_TOO_MANY_CONNECTIONS, "Too many connections; try again later."
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.release(self)
        if self.logged_in:
            metrics.DOOR_SESSIONS.dec()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def withdraw(self) -> None:
        log.info("ssh door: ending %s's connection from %s: key %r or account withdrawn",
                 self.username, self.client, self.key_name)  # fmt: skip
        self.key_id = None
        if self.conn is not None:
            # asyncssh's disconnect() closes the channels before it sends the reason, and `ssh -J`
            # ends as soon as its one channel closes, without reading on: the reason goes first.
            self.conn._send_disconnect(asyncssh.DISC_BY_APPLICATION, WITHDRAWN, "en-US")
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, WITHDRAWN)

    # -- login: registered public keys only ----------------------------------------------------

    def begin_auth(self, username: str) -> bool:
        self.username = username
        return True  # every login must authenticate

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint("sha256")
        signing = fingerprint == self.signature_due  # ssh asks with a key, then signs with it: one attempt
        self.signature_due = None
        if not signing and not self._may_offer_another_key():
            return False
        try:
            holder = await db(_key_holder)(username, fingerprint)
        except Exception:
            log.exception("ssh door: cannot check a key; refusing")
            return False
        if holder is None:
            return False
        self.user_id, self.key_id, self.key_name = holder
        if not signing:
            self.signature_due = fingerprint
        return True

    def _may_offer_another_key(self) -> bool:
        self.attempts += 1
        if self.attempts <= self.door.config.max_auth_attempts:
            return True
        if self.attempts == self.door.config.max_auth_attempts + 1 and self.conn is not None:
            log.warning("ssh door: %s offered too many keys; disconnecting", self.client)
            asyncio.get_running_loop().call_soon(
                self.conn.disconnect, asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "Too many authentication attempts."
            )
        return False

    def auth_completed(self) -> None:
        log.info("ssh door: %s logged in from %s with key %r", self.username, self.client, self.key_name)
        self.logged_in = True
        metrics.DOOR_SESSIONS.inc()
        if self.conn is not None and self.key_id is not None:
            self.conn.create_task(db(_touch_key)(self.key_id))

    # -- channels: only direct-tcpip to running SSH tasks the user may reach ---------------------------

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int):
        return self._join_task(dest_host)

    async def _join_task(self, dest_host: str) -> asyncssh.SSHForwarder:
        assert self.conn is not None and self.user_id is not None and self.key_id is not None
        task_id = task_id_from_destination(dest_host)
        try:
            plan = await db(_plan)(self.key_id, self.user_id, task_id)
        except Exception:
            log.exception("ssh door: cannot look up task %s", task_id)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, "Rosetta cannot look up tasks right now; try again."
            ) from None
        if plan.refusal is not None:
            log.info("ssh door: %s from %s refused %r: %s", self.username, self.client, dest_host[:80], plan.refusal)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, plan.refusal)
        assert plan.endpoint is not None
        try:
            address = await plan.reach(*plan.endpoint) if plan.reach is not None else plan.endpoint
            if isinstance(address, str):
                forwarder = await self.conn.forward_unix_connection(address)
            else:
                forwarder = await self.conn.forward_connection(*address)
        except Exception as error:  # the resource's connection, the task's port: said plainly, logged in full
            log.warning("ssh door: task %s on %s not reached: %s", plan.task_id, plan.resource, error)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, f"Task {plan.task_id} does not answer on its SSH port; try again."
            ) from None
        log.info("ssh door: %s from %s to task %s", self.username, self.client, plan.task_id)
        return forwarder

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # no remote forwarding: the door listens for nobody

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False


# -- running ----------------------------------------------------------------------------------


def run_door(config: DoorConfig, sockets: list[socket.socket], ready: Callable[[], None] | None = None) -> int:
    """Serve until SIGTERM (stop accepting, let sessions finish) or SIGINT (stop now)."""
    return asyncio.run(_serve(config, sockets, ready))


async def _serve(config: DoorConfig, sockets: list[socket.socket], ready: Callable[[], None] | None) -> int:
    loop = asyncio.get_running_loop()
    door = Door(config)
    stop = asyncio.Event()
    drain = True

    def stop_now() -> None:
        nonlocal drain
        drain = False
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop_now)
    await door.start(sockets)
    if ready is not None:
        ready()
    await stop.wait()
    await door.drain(config.drain_timeout if drain else 0)
    return 0
