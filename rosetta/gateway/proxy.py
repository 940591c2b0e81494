"""The gateway: Rosetta's one front door for HTTP and WebSocket.

Each task is served at its own origin, ``http://<task_id>.<tasks_domain>:<port>/``; any
other Host goes to the platform (Django). For a task origin the gateway checks access
against an in-memory ``RouteTable`` and forwards to the task's interface.

The parts: ``head`` reads request heads and ``policy`` decides who may do what (pure
functions), ``admission`` counts connections and requests per client, ``relay`` moves the
bytes (asyncio protocols), and this module holds them together — the listening sockets, the route
table and its reloads, the limits every client shares, worker processes, and a graceful stop
that lets open connections (WebSockets included) finish while a new gateway already accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rosetta.core import metrics, notify
from rosetta.gateway.access import AccessVerifier, cookie_name, task_id_from_host
from rosetta.gateway.admission import Admission
from rosetta.gateway.policy import Site
from rosetta.gateway.relay import ClientConnection, Tally
from rosetta.gateway.routes import RouteTable
from rosetta.gateway.used_tokens import DatabaseUsedTokens, ProcessUsedTokens, UsedTokens

log = logging.getLogger(__name__)

FRESH_TABLE_TIMEOUT = 1.0  # how long a request may wait for the route table to catch up
SIGNALLED_RELOAD_WAIT = 0.25  # how long it waits for a reload already signalled before asking for one
ASKED_RELOAD_GAP = 0.1  # seconds between reloads that requests ask for (a flood must not become one per request)
METRICS_PERIOD = 2.0  # seconds between handing the tally to the metrics
LISTEN_BACKLOG = 4096  # connections the kernel holds while no gateway process accepts (a restart)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class GatewayConfig:
    listen: list[tuple[str, int]]
    tasks_domain: str
    platform_upstream: tuple[str, int] | str  # a str is a unix socket path
    public_url: str  # where the platform's own pages are, e.g. http://localhost:8000; https means __Host- cookies
    key: bytes
    used_tokens: Path | None = None  # shared record of redeemed one-time tokens; None: this process's memory
    used_tokens_in_database: bool = False  # instead: the database's (gateways on several machines)
    reload_interval: float = 5.0
    workers: int = 1  # processes sharing the listening ports through SO_REUSEPORT
    first_byte_timeout: float = 10.0  # a connection must send something within this
    head_timeout: float = 30.0  # a request head must arrive within this (slow clients hold sockets)
    idle_timeout: float = 120.0  # a connection with no bytes either way for this long is closed
    # Limits per gateway process.
    max_connections: int = 10_000
    max_connections_per_client: int = 256  # per client address
    max_in_flight_per_client: int = 32  # requests of one address waiting for their response; others queue
    max_platform_body: int = 64 * 1024 * 1024  # request bodies to the platform's own routes (API, forms)
    drain_timeout: float = 600.0  # a stopping gateway lets open connections (WebSockets) finish this long
    # Addresses of TLS terminators in front (as the socket reports them): their X-Forwarded-For
    # names the client, and per-client limits are theirs to keep (docs/deployment.md).
    trusted_proxies: tuple[str, ...] = ()


def bind_addresses(listen: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """``localhost`` means both loopbacks: resolvers may answer ::1 first."""
    addresses = []
    for host, port in listen:
        if host == "localhost":
            addresses += [("127.0.0.1", port), ("::1", port)]
        else:
            addresses.append((host, port))
    return addresses


def listening_sockets(listen: list[tuple[str, int]], workers: int = 1) -> list[list[socket.socket]]:
    """Bound, listening sockets: one group per worker process, one socket per address.

    Whoever holds them keeps connections queued while no gateway accepts: ``rosetta run``
    opens them once and hands them to every gateway it starts, so restarting the gateway
    refuses no connection. Several workers each get a socket of their own on the same port
    (SO_REUSEPORT), among which the kernel spreads new connections evenly."""
    groups: list[list[socket.socket]] = []
    addresses = bind_addresses(listen)
    for _ in range(max(1, workers)):
        group = []
        for number, (host, port) in enumerate(addresses):
            try:
                sock = _listen(host, port, reuse_port=workers > 1)
            except OSError as error:
                if host == "::1":  # IPv6 may be disabled; 127.0.0.1 still serves localhost
                    log.warning("gateway: not listening on [::1]:%s: %s", port, error)
                    continue
                for opened in [*group, *(sock for previous in groups for sock in previous)]:
                    opened.close()
                raise
            group.append(sock)
            addresses[number] = (host, sock.getsockname()[1])  # port 0: the next workers share the port chosen
        groups.append(group)
    return groups


def inherited_sockets(fds: list[int], workers: int = 1) -> list[list[socket.socket]]:
    """The listening sockets ``listening_sockets`` made in a parent process, grouped again per worker."""
    sockets = [socket.socket(fileno=fd) for fd in fds]
    per_worker = max(1, len(sockets) // max(1, workers))
    return [sockets[start : start + per_worker] for start in range(0, len(sockets), per_worker)]


def _listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Gateway:
    """The listening sockets, the current route table they answer from, and what every
    connection shares: the access verifier, the used-token record, the connection limits."""

    def __init__(self, config: GatewayConfig, table: RouteTable | None = None) -> None:
        self.config = config
        self.table = table if table is not None else RouteTable()
        self.verifier = AccessVerifier(config.key)
        self.used_tokens = _used_tokens(config)
        self.site = Site(config.public_url, config.tasks_domain, config.max_platform_body)
        self.trusted_proxies = frozenset(config.trusted_proxies)
        self.https = config.public_url.startswith("https://")
        self.forwarded_proto = b"https" if self.https else b"http"
        self.cookie_name = cookie_name(self.https)
        self.cookie_prefix = self.cookie_name.encode() + b"="
        self.admission = Admission(
            config.max_connections, config.max_connections_per_client, config.max_in_flight_per_client
        )
        self.connections: set[ClientConnection] = self.admission.connections
        self.watch_period = min(config.first_byte_timeout, config.head_timeout, config.idle_timeout) / 4
        self.draining = False
        self._task_ids: dict[bytes, str | None] = {}
        self._servers: list[asyncio.Server] = []
        # When the current table's database read began (loop time); a table given here is fixed.
        self.table_time = float("-inf") if table is None else float("inf")
        # Counts the times someone's access was taken away; the table knows the changes up to its generation.
        self.access_generation = 0
        self.table_generation = 0
        self.request_reload: Callable[[], None] = lambda: None  # set by whoever reloads the table
        self._table_waiters: list[asyncio.Future] = []
        self.tally = Tally()
        self._counted = Tally()  # what the metrics were given so far
        self._counting: asyncio.TimerHandle | None = None

    # -- what connections ask -------------------------------------------------------------

    def task_id_from_host(self, host: bytes) -> str | None:
        task_id = self._task_ids.get(host, False)
        if task_id is False:
            task_id = task_id_from_host(host.decode("latin-1"), self.config.tasks_domain)
            if len(self._task_ids) < 65536:  # any Host a client likes: bounded
                self._task_ids[host] = task_id
        return task_id

    def set_cookie(self, value: str) -> str:
        """The Set-Cookie value for an access cookie: host-only (no Domain), for the whole origin."""
        secure = "; Secure" if self.https else ""
        return f"{self.cookie_name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"

    # -- the route table --------------------------------------------------------------------

    def set_table(self, table: RouteTable, read_at: float | None = None, generation: int | None = None) -> None:
        """Answer from ``table`` from now on: read from the database at ``read_at`` (loop time),
        after the access changes up to ``generation`` (default: both now)."""
        self.table = table
        self.table_time = asyncio.get_running_loop().time() if read_at is None else read_at
        self.table_generation = self.access_generation if generation is None else generation
        waiters, self._table_waiters = self._table_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def access_changed(self) -> None:
        """Someone's access was taken away: requests to tasks wait until the table says whose."""
        self.access_generation += 1

    async def table_read_since(self, moment: float, generation: int = 0, timeout: float = FRESH_TABLE_TIMEOUT) -> None:
        """Wait until the route table was read from the database at ``moment`` or later (the
        database may know a task the table does not know yet) and after access change
        ``generation``, or ``timeout`` passes.

        A change is usually signalled already: the reload it brings is awaited first. Only when
        none comes is a reload asked for (those are rationed, see ASKED_RELOAD_GAP)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ask_after = loop.time() + SIGNALLED_RELOAD_WAIT
        while (self.table_time < moment or self.table_generation < generation) and (left := deadline - loop.time()) > 0:
            if loop.time() >= ask_after:
                self.request_reload()
                wait = left
            else:
                wait = min(left, ask_after - loop.time())
            waiter = loop.create_future()
            self._table_waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, wait)

    # -- serving ----------------------------------------------------------------------------

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._counting = loop.call_later(METRICS_PERIOD, self.count_now_and_then)
        for sock in sockets if sockets is not None else listening_sockets(self.config.listen)[0]:
            server = await loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=LISTEN_BACKLOG)
            self._servers.append(server)
            log.info("gateway listening on %s", [s.getsockname() for s in server.sockets])

    @property
    def addresses(self) -> list[tuple]:
        return [sock.getsockname() for server in self._servers for sock in server.sockets]

    async def drain(self, timeout: float) -> None:
        """Stop accepting, let open connections finish (idle ones close at once), then close
        what is left after ``timeout``. Another gateway holding the same sockets goes on
        accepting meanwhile."""
        self.draining = True
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.rearm_watchdog()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.connections:
            log.info("gateway: draining %d connections", len(self.connections))
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.1)
        await self.close()

    def count_now_and_then(self) -> None:
        self.count()
        self._counting = asyncio.get_running_loop().call_later(METRICS_PERIOD, self.count_now_and_then)

    def count(self) -> None:
        """Hand what passed since the last time to the metrics (rosetta.core.metrics)."""
        tally, counted = self.tally, self._counted
        for kind, attribute in (("platform", "platform_requests"), ("task", "task_requests")):
            metrics.GATEWAY_REQUESTS.labels(kind).inc(getattr(tally, attribute) - getattr(counted, attribute))
        for direction, attribute in (("from_clients", "bytes_from_clients"), ("to_clients", "bytes_to_clients")):
            metrics.GATEWAY_BYTES.labels(direction).inc(getattr(tally, attribute) - getattr(counted, attribute))
        metrics.GATEWAY_REQUESTS.labels("websocket").inc(tally.switched - counted.switched)
        for attribute in Tally.__slots__:
            setattr(counted, attribute, getattr(tally, attribute))
        metrics.OPEN_CONNECTIONS.set(len(self.connections))
        metrics.OPEN_WEBSOCKETS.set(tally.switched - tally.switched_ended)

    async def close(self) -> None:
        if self._counting is not None:
            self._counting.cancel()
            self.count()
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


def _used_tokens(config: GatewayConfig) -> UsedTokens | DatabaseUsedTokens | ProcessUsedTokens:
    if config.used_tokens_in_database:
        return DatabaseUsedTokens()
    return UsedTokens(config.used_tokens) if config.used_tokens else ProcessUsedTokens()


# -- running --------------------------------------------------------------------------


async def _load(load_table: Callable[[], RouteTable]) -> RouteTable | None:
    try:
        return await asyncio.get_running_loop().run_in_executor(None, load_table)
    except Exception:
        log.exception("gateway: could not load the route table; keeping the previous one")
        return None


def run_gateway(
    config: GatewayConfig,
    load_table: Callable[[], RouteTable],
    listener: str | None = notify.GATEWAY,
    sockets: list[list[socket.socket]] | None = None,
    ready: Callable[[], None] | None = None,
) -> int:
    """Serve until SIGTERM (then drain) or SIGINT; the exit status.

    ``sockets`` are listening sockets per worker (``listening_sockets``), opened here when
    not given. With ``config.workers`` > 1 the other workers are forked first, before this
    process has threads or an event loop; each has its own wake-up socket
    (``<listener>-<n>``), this process relays wake-ups to them, and they stop when it does.
    ``ready`` is called once this process accepts."""
    import uvloop

    groups = sockets if sockets is not None else listening_sockets(config.listen, config.workers)
    _raise_open_files_limit()
    workers = []
    context = multiprocessing.get_context("fork")  # load_table may need state of this process (Django)
    for number, group in enumerate(groups[1:], 1):
        name = f"{listener}-{number}" if listener else None
        worker = context.Process(target=_run_worker, args=(config, load_table, name, group, os.getpid()), daemon=True)
        worker.start()
        workers.append((name, worker))
        for sock in group:
            sock.close()  # the worker's own: a dead worker must not leave a socket nobody accepts from
    try:
        return uvloop.run(_serve(config, load_table, listener, groups[0], workers, ready=ready))
    finally:
        for _, worker in workers:
            worker.join()


def _signal_workers(workers: list[tuple[str | None, multiprocessing.Process]], sig: int) -> None:
    for _, worker in workers:
        if worker.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, sig)


def _raise_open_files_limit() -> None:
    """Each client connection holds two descriptors (client, upstream): allow what the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run_worker(
    config: GatewayConfig,
    load_table: Callable[[], RouteTable],
    listener: str | None,
    sockets: list[socket.socket],
    parent_pid: int,
) -> None:
    import uvloop

    _stop_with_parent()
    uvloop.run(_serve(config, load_table, listener, sockets, [], parent_pid=parent_pid))


def _stop_with_parent() -> None:
    """Have the kernel send this worker SIGTERM (drain, then exit) when its gateway dies, even
    by SIGKILL; the parent check of the reload loop stays as a fallback."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _serve(
    config: GatewayConfig,
    load_table: Callable[[], RouteTable],
    listener: str | None,
    sockets: list[socket.socket],
    workers: list[tuple[str | None, multiprocessing.Process]],
    parent_pid: int | None = None,
    ready: Callable[[], None] | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    gateway = Gateway(config)
    stop = asyncio.Event()
    status = 0
    drain = True  # stop accepting, let open connections finish; else close them at once

    def stop_now(exit_status: int = 0) -> None:
        nonlocal status, drain
        status, drain = exit_status, False
        stop.set()

    def worker_died(name: str | None) -> None:
        log.error("gateway: worker %s died; stopping so that a whole new gateway takes over", name)
        stop_now(1)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop_now)
    for name, worker in workers:
        loop.add_reader(worker.sentinel, worker_died, name)
    began = loop.time()
    gateway.set_table(await _load(load_table) or RouteTable(), began, 0)

    def woken(topics: set[str]) -> None:
        if notify.ACCESS in topics:
            gateway.access_changed()
        for name, _ in workers:  # at once: a worker may be about to answer a request the change concerns
            for topic in topics:
                notify.wake_local(name, topic)

    # The gateway's first process hears every machine's signals; its workers hear them from it.
    shared = None if parent_pid is None else False
    wakeups = notify.Listener(listener, on_wake=woken, shared=shared) if listener else None
    if wakeups is not None:
        wakeups.start()
        gateway.request_reload = wakeups.woken.set
    await gateway.start(sockets)
    if ready is not None:
        ready()
    reloading = loop.create_task(_reload_forever(gateway, config, load_table, wakeups, parent_pid, stop))
    try:
        await stop.wait()
        for _, worker in workers:
            loop.remove_reader(worker.sentinel)
        _signal_workers(workers, signal.SIGTERM if drain else signal.SIGINT)  # each does as this one
        await gateway.drain(config.drain_timeout if drain else 0)
    finally:
        reloading.cancel()
        if wakeups is not None:
            wakeups.close()
        await gateway.close()
    return status


async def _reload_forever(
    gateway: Gateway,
    config: GatewayConfig,
    load_table: Callable[[], RouteTable],
    wakeups: notify.Listener | None,
    parent_pid: int | None,
    stop: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    if wakeups is None:
        wanted = asyncio.Event()
        gateway.request_reload = wanted.set
    while True:
        if parent_pid is not None and os.getppid() != parent_pid:
            stop.set()  # the gateway this worker belongs to is gone
        if wakeups is not None:
            woken = await wakeups.wait(config.reload_interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wanted.wait(), config.reload_interval)
            wanted.clear()
            woken = set()
        if not woken:
            # Only requests asked (or nobody: the fallback poll): at most one such reload
            # per gap. A change signalled meanwhile is read at once; changes signalled
            # during a reload are read together by the next.
            await asyncio.sleep(max(0.0, ASKED_RELOAD_GAP - (loop.time() - began)))
        began, generation = loop.time(), gateway.access_generation
        table = await _load(load_table)
        if table is not None:
            gateway.set_table(table, began, generation)
