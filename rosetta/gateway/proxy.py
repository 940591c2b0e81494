"""The gateway: Rosetta's one front door for HTTP and WebSocket.

Each task is served at its own origin, ``http://<task_id>.<tasks_domain>:<port>/``; any
other Host goes to the platform (Django). For a task origin the gateway checks access
against an in-memory ``RouteTable`` and forwards to the task's interface.

It stays fast by doing little: asyncio Protocols (no streams), httptools parsing request
heads only, one upstream connection pinned to each client connection, and responses
relayed as raw bytes without ever being parsed. Consequences worth knowing:

- When the upstream closes its connection, the client's is closed too.
- A response the gateway makes itself (refusal, login, "task not ready") ends the
  connection, because the gateway cannot tell where an upstream response it relays ends.
- After an Upgrade request is forwarded, bytes are piped both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import multiprocessing
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import httptools

from rosetta.accounts.tokens import TOKEN_PREFIX, hash_token
from rosetta.computing.errors import ComputingError
from rosetta.core import notify
from rosetta.gateway.access import (
    COOKIE_NAME,
    LOGIN_PATH,
    AccessVerifier,
    safe_next_path,
    task_id_from_host,
)
from rosetta.gateway.routes import Route, RouteTable

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_LOGIN_BODY_BYTES = 8 * 1024
UPSTREAM_CONNECT_TIMEOUT = 10.0
FRESH_TABLE_TIMEOUT = 1.0  # how long a request may wait for the route table to catch up
SIGNALLED_RELOAD_WAIT = 0.25  # how long it waits for a reload already signalled before asking for one
ASKED_RELOAD_GAP = 0.1  # seconds between reloads that requests ask for (a flood must not become one per request)

_COOKIE_PREFIX = COOKIE_NAME.encode() + b"="
_LOGIN_PATH = LOGIN_PATH.encode()
_BEARER_PREFIX = b"bearer " + TOKEN_PREFIX.encode()
# Client-supplied values would be spoofable; the gateway sets its own.
_REPLACED_HEADERS = frozenset((b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"))

# What the client connection does with the rest of the current request.
_FORWARD = 0  # relay body to the upstream
_LOGIN = 1  # collect a small form body for LOGIN_PATH
_DISCARD = 2  # a response was already sent; drop the body, then close
_DEFERRED = 3  # answered once the route table is at least as new as the request


@dataclass
class GatewayConfig:
    listen: list[tuple[str, int]]
    tasks_domain: str
    platform_upstream: tuple[str, int] | str  # a str is a unix socket path
    public_url: str  # where the platform's own pages are, e.g. http://localhost:8000
    key: bytes
    secure_cookies: bool = False  # the public scheme is https
    reload_interval: float = 5.0
    workers: int = 1  # processes sharing the listening ports through SO_REUSEPORT
    head_timeout: float = 30.0  # a request head must arrive within this (slow clients hold sockets)
    idle_timeout: float = 120.0  # a connection with no bytes either way for this long is closed


def bind_addresses(listen: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """``localhost`` means both loopbacks: resolvers may answer ::1 first."""
    addresses = []
    for host, port in listen:
        if host == "localhost":
            addresses += [("127.0.0.1", port), ("::1", port)]
        else:
            addresses.append((host, port))
    return addresses


class Gateway:
    """The listening sockets and the current route table they answer from."""

    def __init__(self, config: GatewayConfig, table: RouteTable | None = None) -> None:
        self.config = config
        self.table = table if table is not None else RouteTable()
        self.verifier = AccessVerifier(config.key)
        self.public_url = config.public_url.rstrip("/")
        self.forwarded_proto = b"https" if config.secure_cookies else b"http"
        self.connections: set[ClientConnection] = set()
        self._servers: list[asyncio.Server] = []
        # When the current table's database read began (loop time); a table given here is fixed.
        self.table_time = float("-inf") if table is None else float("inf")
        self.request_reload: Callable[[], None] = lambda: None  # set by whoever reloads the table
        self._table_waiters: list[asyncio.Future] = []

    def set_table(self, table: RouteTable, read_at: float | None = None) -> None:
        self.table = table
        self.table_time = asyncio.get_running_loop().time() if read_at is None else read_at
        waiters, self._table_waiters = self._table_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def table_read_since(self, moment: float, timeout: float = FRESH_TABLE_TIMEOUT) -> None:
        """Wait until the route table was read from the database at ``moment`` or later (the
        database may know a task the table does not know yet), or ``timeout`` passes.

        A change is usually signalled already: the reload it brings is awaited first. Only when
        none comes is a reload asked for (those are rationed, see ASKED_RELOAD_GAP)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ask_after = loop.time() + SIGNALLED_RELOAD_WAIT
        while self.table_time < moment and (left := deadline - loop.time()) > 0:
            if loop.time() >= ask_after:
                self.request_reload()
                wait = left
            else:
                wait = min(left, ask_after - loop.time())
            waiter = loop.create_future()
            self._table_waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, wait)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        reuse_port = self.config.workers > 1
        for host, port in bind_addresses(self.config.listen):
            try:
                server = await loop.create_server(
                    lambda: ClientConnection(self), host, port, reuse_port=reuse_port, backlog=1024
                )
            except OSError as error:
                if host == "::1":  # IPv6 may be disabled; 127.0.0.1 still serves localhost
                    log.warning("gateway: not listening on [::1]:%s: %s", port, error)
                    continue
                raise
            self._servers.append(server)
            log.info("gateway listening on %s", [s.getsockname() for s in server.sockets])

    @property
    def addresses(self) -> list[tuple]:
        return [sock.getsockname() for server in self._servers for sock in server.sockets]

    async def serve_forever(self) -> None:
        if not self._servers:
            await self.start()
        await asyncio.gather(*(server.serve_forever() for server in self._servers))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


class UpstreamConnection(asyncio.Protocol):
    """The gateway's connection to a task (or the platform), relaying bytes to the client."""

    __slots__ = ("client", "client_transport", "transport", "detached")

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.client_transport = client.transport
        self.transport: asyncio.Transport | None = None
        self.detached = False  # the client moved on to another upstream

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.active = True
        self.client_transport.write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.detached:
            self.client.close()

    def pause_writing(self) -> None:
        self.client.hold_reading("upstream-full")

    def resume_writing(self) -> None:
        self.client.release_reading("upstream-full")

    def detach(self) -> None:
        self.detached = True
        if self.transport is not None:
            self.transport.close()


class ClientConnection(asyncio.Protocol):
    """One browser/client connection: parses request heads, authorizes, forwards."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.tunnel = False  # after an Upgrade: raw bytes both ways
        self.forwarded_for = b""
        self.paused_for: set[str] = set()
        # The request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.reading_head = True
        self.unparsed_head_bytes = 0
        self.mode = _FORWARD
        self.chunked = False
        self.login_body = b""
        self.login_task: tuple[str, Route] | None = None
        # The pinned upstream: a task id, or "" for the platform.
        self.upstream: UpstreamConnection | None = None
        self.upstream_transport: asyncio.Transport | None = None
        self.upstream_target: str | None = None
        self.upstream_pending: list[bytes] = []
        self.connecting: asyncio.Task | None = None
        self.eof_pending = False  # the client half-closed before the upstream connected
        # Host header -> task id, for the keep-alive case where the Host never changes.
        self.last_host: bytes | None = None
        self.last_task_id: str | None = None
        # Timeouts: a periodic check instead of a timer reset per packet keeps the hot path cheap.
        self.active = False  # bytes moved since the last check
        self.idle_for = 0.0
        self.head_started: float | None = None
        self.arrived = 0.0  # when the current request's head began
        self.routing: asyncio.Task | None = None  # a request waiting for a fresher route table
        self.watchdog: asyncio.TimerHandle | None = None

    # -- transport events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.gateway.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.forwarded_for = str(peer[0]).encode() if isinstance(peer, tuple) else b"unix"
        self.head_started = asyncio.get_running_loop().time()
        self.arm_watchdog()

    def arm_watchdog(self) -> None:
        config = self.gateway.config
        period = min(config.head_timeout, config.idle_timeout) / 3
        self.watchdog = asyncio.get_running_loop().call_later(period, self.check_timeouts, period)

    def check_timeouts(self, period: float) -> None:
        """Close connections that hold a socket without using it: a head that never
        completes (slowloris), or no bytes either way for the idle timeout. WebSocket
        tunnels are left alone; their applications ping as they see fit."""
        if self.closed or self.tunnel:
            return
        config = self.gateway.config
        now = asyncio.get_running_loop().time()
        if self.head_started is not None and now - self.head_started > config.head_timeout:
            if self.head_size or self.unparsed_head_bytes:
                self.refuse(408, "Request timeout", "The request head did not arrive in time.")
            self.close()
            return
        self.idle_for = 0.0 if self.active else self.idle_for + period
        self.active = False
        if self.idle_for >= config.idle_timeout:
            self.close()
            return
        self.arm_watchdog()

    def data_received(self, data: bytes) -> None:
        self.active = True
        if self.tunnel:
            self.send_upstream(data)
            return
        head_was_incomplete = self.reading_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if not self.closed:
                self.tunnel = True
                rest = data[upgrade.args[0] :]
                if rest:
                    self.send_upstream(rest)
            return
        except httptools.HttpParserError:
            if not self.closed:
                self.refuse(400, "Bad request", "The gateway could not parse this request.")
                self.close()
            return
        if head_was_incomplete and self.reading_head and not self.closed:
            # httptools buffers a header line until it ends; bound what it may hold.
            self.unparsed_head_bytes += len(data)
            if self.unparsed_head_bytes > MAX_HEAD_BYTES:
                self.refuse(431, "Request header fields too large", "The request head is too large.")
                self.close()

    def eof_received(self) -> bool:
        # A half-closing client still waits for its response.
        if self.connecting is not None:
            self.eof_pending = True
            return True
        if self.upstream_transport is not None and self.upstream_transport.can_write_eof():
            self.upstream_transport.write_eof()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.connections.discard(self)
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.routing is not None:
            self.routing.cancel()
        self.drop_upstream()

    def pause_writing(self) -> None:
        if self.upstream_transport is not None:
            self.upstream_transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream_transport is not None:
            self.upstream_transport.resume_reading()

    def hold_reading(self, reason: str) -> None:
        if not self.paused_for and not self.closed:
            self.transport.pause_reading()
        self.paused_for.add(reason)

    def release_reading(self, reason: str) -> None:
        self.paused_for.discard(reason)
        if not self.paused_for and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()  # flushes what was already written
        self.drop_upstream()

    # -- httptools callbacks ------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4

    def on_message_begin(self) -> None:
        if self.head_started is None:
            self.head_started = asyncio.get_running_loop().time()

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.arrived, self.head_started = self.head_started or 0.0, None
        if self.closed:
            return
        if self.routing is not None:  # a pipelined request behind one still being routed
            self.close()
            return
        if self.head_size > MAX_HEAD_BYTES:
            self.refuse(431, "Request header fields too large", "The request head is too large.")
            return
        if self.url[:1] != b"/" and self.url != b"*":
            # Absolute-form and CONNECT targets could name another origin than the Host we route by.
            self.refuse(400, "Bad request", "The gateway only accepts origin-form request targets.")
            return
        host = None
        for name, value in self.headers:
            if name.lower() == b"host":
                if host is not None:
                    self.refuse(400, "Bad request", "The request has more than one Host header.")
                    return
                host = value
        host = host or b""
        if host != self.last_host:
            self.last_host = host
            self.last_task_id = task_id_from_host(host.decode("latin-1"), self.gateway.config.tasks_domain)
        task_id = self.last_task_id
        if task_id is None:
            self.forward(host, "", self.headers, None)
        else:
            self.handle_task_request(host, task_id)

    def on_body(self, body: bytes) -> None:
        if self.mode == _FORWARD:
            if self.chunked:
                self.send_upstream(b"%x\r\n%b\r\n" % (len(body), body))
            else:
                self.send_upstream(body)
        elif self.mode == _LOGIN:
            self.login_body += body
            if len(self.login_body) > MAX_LOGIN_BODY_BYTES:
                self.refuse(413, "Request too large", "The login form is too large.")

    def on_message_complete(self) -> None:
        if self.mode == _FORWARD:
            if self.chunked:
                self.send_upstream(b"0\r\n\r\n")
        elif self.mode == _LOGIN:
            self.complete_login()
        elif self.mode != _DEFERRED:
            self.close()
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.reading_head = True
        self.unparsed_head_bytes = 0
        self.mode = _DEFERRED if self.mode == _DEFERRED else _FORWARD
        self.chunked = False

    # -- task origins -------------------------------------------------------------------

    def handle_task_request(self, host: bytes, task_id: str, fresh: bool = False) -> None:
        table = self.gateway.table
        route = table.routes.get(task_id)
        if not fresh and self.table_may_lag(route):
            self.defer(host, task_id)
            return
        if route is None:
            self.refuse(404, "No such task", f"There is no task “{task_id}” here.", task_id)
            return
        method = self.parser.get_method()
        path = self.url.partition(b"?")[0]
        if path == _LOGIN_PATH:
            self.start_login(method, task_id, route)
            return
        kept, cookies, bearer_user, accepts_html = self.split_credentials(self.headers, table)
        user_ids = []
        # Several values can arrive when a sibling origin tosses a cookie of the same name.
        for cookie in cookies:
            cookie_user = self.gateway.verifier.check_cookie(cookie, task_id)
            if cookie_user is not None:
                user_ids.append(cookie_user)
        if bearer_user is not None:
            user_ids.append(bearer_user)
        if any(table.may_access(user_id, route) for user_id in user_ids):
            self.forward(host, task_id, kept, route)
        elif user_ids:
            self.refuse(403, "Not allowed", f"You may not open the task “{route.name}”.", task_id)
        elif method == b"GET" and accepts_html:
            self.redirect_to_platform(task_id)
        else:
            self.refuse(
                401,
                "Authentication required",
                "Open this task from Rosetta, or send an API token.",
                task_id,
                extra_headers=b"WWW-Authenticate: Bearer\r\n",
            )

    def table_may_lag(self, route: Route | None) -> bool:
        """Whether to wait for a fresher route table before answering "no such task" or "not
        ready": the database may already know better (a task just created, or just started).
        Only for requests without a body, which can wait without anything to hold."""
        if route is not None and (route.upstream is not None or route.is_final):
            return False
        if self.gateway.table_time >= self.arrived:
            return False
        return not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    def defer(self, host: bytes, task_id: str) -> None:
        self.mode = _DEFERRED
        self.hold_reading("routing")
        request = (self.url, self.headers, self.arrived)
        self.routing = asyncio.get_running_loop().create_task(self.route_when_fresh(host, task_id, request))

    async def route_when_fresh(self, host: bytes, task_id: str, request: tuple) -> None:
        url, headers, arrived = request
        await self.gateway.table_read_since(arrived)
        self.routing = None
        if self.closed:
            return
        self.url, self.headers, self.mode = url, headers, _FORWARD
        self.handle_task_request(host, task_id, fresh=True)
        self.url, self.headers = b"", []
        if self.mode == _DISCARD:  # answered by the gateway itself; the request is complete
            self.close()
        self.mode = _FORWARD
        self.release_reading("routing")

    def split_credentials(
        self, headers: list[tuple[bytes, bytes]], table: RouteTable
    ) -> tuple[list[tuple[bytes, bytes]], list[str], int | None, bool]:
        """The headers the task may see, the access cookies, the API token's user, and
        whether the client wants HTML."""
        kept = []
        cookies: list[str] = []
        bearer_user = None
        accepts_html = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"cookie" and _COOKIE_PREFIX in value:
                value = _take_access_cookies(value, cookies)
                if not value:
                    continue
            elif lowered == b"authorization" and value[:11].lower() == _BEARER_PREFIX:
                user_id = table.token_users.get(hash_token(value[7:].strip().decode("latin-1")))
                if user_id is not None:
                    bearer_user = user_id
                    continue
            elif lowered == b"accept":
                accepts_html = b"text/html" in value
            kept.append((name, value))
        return kept, cookies, bearer_user, accepts_html

    def redirect_to_platform(self, task_id: str) -> None:
        next_path = urllib.parse.quote(self.url.decode("latin-1"), safe="")
        location = f"{self.gateway.public_url}/tasks/{urllib.parse.quote(task_id)}/open?next={next_path}"
        body = _page("Opening task", f'<p><a href="{html.escape(location)}">Open this task from Rosetta</a></p>')
        self.respond(302, "Found", body, b"Location: " + location.encode("latin-1") + b"\r\n")
        log.debug("gateway: %s: no credentials, redirected to the platform", task_id)
        self.mode = _DISCARD

    def start_login(self, method: bytes, task_id: str, route: Route) -> None:
        if method != b"POST":
            self.refuse(
                405,
                "Method not allowed",
                "Sign in by opening the task from Rosetta.",
                task_id,
                extra_headers=b"Allow: POST\r\n",
            )
            return
        self.mode = _LOGIN
        self.login_body = b""
        self.login_task = (task_id, route)

    def complete_login(self) -> None:
        task_id, route = self.login_task
        form = urllib.parse.parse_qs(self.login_body.decode("utf-8", "replace"))
        token = form.get("token", [""])[0]
        user_id = self.gateway.verifier.redeem(token, task_id)
        if user_id is None:
            open_link = f"{self.gateway.public_url}/tasks/{task_id}"
            self.refuse(
                403,
                "Link expired",
                "This link has expired or was already used; open the task again from Rosetta. "
                f'<a href="{html.escape(open_link)}">Back to the task</a>',
                task_id,
                escape=False,
            )
        elif not self.gateway.table.may_access(user_id, route):
            self.refuse(403, "Not allowed", f"You may not open the task “{route.name}”.", task_id)
        else:
            cookie = self.gateway.verifier.make_cookie(user_id, task_id)
            secure = "; Secure" if self.gateway.config.secure_cookies else ""
            location = safe_next_path(form.get("next", ["/"])[0])
            headers = (
                f"Set-Cookie: {COOKIE_NAME}={cookie}; Path=/; HttpOnly; SameSite=Lax{secure}\r\n"
                f"Location: {location}\r\n"
            ).encode("latin-1")
            body = _page("Signed in", f'<p><a href="{html.escape(location)}">Continue</a></p>')
            self.respond(303, "See Other", body, headers)
        self.close()

    def upstream_unavailable(self, task_id: str, route: Route | None) -> None:
        """The page shown while there is nothing to forward to: never a bare 502."""
        if route is None:
            text = "<p>Rosetta is not answering yet; this page reloads by itself.</p>"
            body = _page("Rosetta is starting", text, refresh=True)
            self.respond(503, "Service Unavailable", body, b"Retry-After: 2\r\n")
            log.warning("gateway: the platform upstream is not answering")
            return
        name, phase = html.escape(route.name), html.escape(route.phase)
        if route.is_final:
            link = html.escape(f"{self.gateway.public_url}/tasks/{task_id}")
            text = (
                f"<p>The task “{name}” has {phase}; this phase is final, it will not come back.</p>"
                f'<p><a href="{link}">See the task in Rosetta</a></p>'
            )
            self.respond(503, "Service Unavailable", _page(f"{route.name} is {route.phase}", text))
        else:
            text = (
                f"<p>The task “{name}” is {phase}. Its interface is not answering yet; this page reloads by itself.</p>"
            )
            body = _page(f"{route.name} is {route.phase}", text, refresh=True)
            self.respond(503, "Service Unavailable", body, b"Retry-After: 2\r\n")
        log.debug("gateway: %s: upstream unavailable (%s)", task_id, route.phase)

    # -- forwarding ---------------------------------------------------------------------

    def forward(self, host: bytes, target: str, headers: list[tuple[bytes, bytes]], route: Route | None) -> None:
        if target != self.upstream_target:
            address = self.gateway.config.platform_upstream if route is None else route.upstream
            if address is None:
                self.upstream_unavailable(target, route)
                self.mode = _DISCARD
                return
            self.open_upstream(target, address, route)
        parts = [self.parser.get_method(), b" ", self.url, b" HTTP/", self.parser.get_http_version().encode(), b"\r\n"]
        for name, value in headers:
            lowered = name.lower()
            if lowered in _REPLACED_HEADERS:
                continue
            if lowered == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
            parts += (name, b": ", value, b"\r\n")
        parts += (
            b"X-Forwarded-For: ",
            self.forwarded_for,
            b"\r\nX-Forwarded-Proto: ",
            self.gateway.forwarded_proto,
            b"\r\nX-Forwarded-Host: ",
            host,
            b"\r\n\r\n",
        )
        self.send_upstream(b"".join(parts))

    def send_upstream(self, data: bytes) -> None:
        if self.upstream_transport is not None:
            self.upstream_transport.write(data)
        else:
            self.upstream_pending.append(data)

    def open_upstream(self, target: str, address: tuple[str, int] | str, route: Route | None) -> None:
        self.drop_upstream()
        self.upstream_target = target
        self.hold_reading("connecting")
        self.connecting = asyncio.get_running_loop().create_task(self.connect(target, address, route))

    async def connect(self, target: str, address: tuple[str, int] | str, route: Route | None) -> None:
        loop = asyncio.get_running_loop()
        upstream = UpstreamConnection(self)
        try:
            if route is not None and route.reach is not None:
                address = await asyncio.wait_for(route.reach(*address), UPSTREAM_CONNECT_TIMEOUT)
            if isinstance(address, str):
                opening = loop.create_unix_connection(lambda: upstream, address)
            else:
                opening = loop.create_connection(lambda: upstream, address[0], address[1])
            transport, _ = await asyncio.wait_for(opening, UPSTREAM_CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ComputingError):
            if not self.closed:
                self.upstream_unavailable(target, route)
                self.close()
            return
        if self.closed or self.upstream_target != target:
            upstream.detach()
            return
        self.upstream = upstream
        self.upstream_transport = transport
        if self.upstream_pending:
            transport.write(b"".join(self.upstream_pending))
            self.upstream_pending = []
        self.connecting = None
        if self.eof_pending:
            transport.write_eof()
        self.release_reading("connecting")

    def drop_upstream(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.upstream is not None:
            self.upstream.detach()
        self.upstream = None
        self.upstream_transport = None
        self.upstream_target = None
        self.upstream_pending = []
        self.paused_for.discard("upstream-full")

    # -- the gateway's own responses ----------------------------------------------------

    def refuse(
        self, status: int, title: str, text: str, task_id: str = "", *, extra_headers: bytes = b"", escape: bool = True
    ) -> None:
        """Answer with a small error page; the connection ends after this request."""
        paragraph = html.escape(text) if escape else text
        self.respond(status, title, _page(title, f"<p>{paragraph}</p>"), extra_headers)
        log.debug("gateway: refused %s request to %s: %d", self.parser.get_method().decode(), task_id or "-", status)
        self.mode = _DISCARD

    def respond(self, status: int, reason: str, body: bytes, extra_headers: bytes = b"") -> None:
        if self.closed:
            return
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n"
        ).encode()
        self.transport.write(head + extra_headers + b"\r\n" + body)


def _take_access_cookies(header: bytes, found: list[str]) -> bytes:
    """Move the access cookie values of a Cookie header into ``found``; return the rest."""
    others = []
    for pair in header.split(b";"):
        pair = pair.strip()
        if pair.startswith(_COOKIE_PREFIX):
            found.append(pair[len(_COOKIE_PREFIX) :].decode("latin-1"))
        elif pair:
            others.append(pair)
    return b"; ".join(others)


def _page(title: str, body_html: str, refresh: bool = False) -> bytes:
    """A minimal page; callers escape every interpolated value."""
    meta_refresh = '<meta http-equiv="refresh" content="2">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"{meta_refresh}<title>{html.escape(title, quote=False)} · Rosetta</title></head>"
        f"<body><h1>{html.escape(title, quote=False)}</h1>{body_html}</body></html>\n"
    ).encode()


# -- running --------------------------------------------------------------------------


async def _load(load_table: Callable[[], RouteTable]) -> RouteTable | None:
    try:
        return await asyncio.get_running_loop().run_in_executor(None, load_table)
    except Exception:
        log.exception("gateway: could not load the route table; keeping the previous one")
        return None


async def run_gateway(
    config: GatewayConfig, load_table: Callable[[], RouteTable], listener: str | None = notify.GATEWAY
) -> None:
    """Serve until cancelled, reloading routes when woken through ``listener`` and on a poll.

    With ``config.workers`` > 1 the other workers are forked first, before this process
    has threads or sockets; each has its own wake-up socket (``<listener>-<n>``), this
    process relays wake-ups to them, and they exit when it does.
    """
    workers = _fork_workers(config, load_table, listener) if config.workers > 1 else []
    try:
        await _serve(config, load_table, listener, [name for name, _ in workers])
    finally:
        for _, worker in workers:
            worker.terminate()


def _fork_workers(
    config: GatewayConfig, load_table: Callable[[], RouteTable], listener: str | None
) -> list[tuple[str | None, multiprocessing.Process]]:
    context = multiprocessing.get_context("fork")  # load_table may need state of this process (Django)
    workers = []
    for number in range(1, config.workers):
        name = f"{listener}-{number}" if listener else None
        worker = context.Process(target=_run_worker, args=(config, load_table, name, os.getpid()), daemon=True)
        worker.start()
        workers.append((name, worker))
    return workers


def _run_worker(
    config: GatewayConfig, load_table: Callable[[], RouteTable], listener: str | None, parent_pid: int
) -> None:
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(config, load_table, listener, [], parent_pid))


async def _serve(
    config: GatewayConfig,
    load_table: Callable[[], RouteTable],
    listener: str | None,
    relay_to: list[str | None],
    parent_pid: int | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    gateway = Gateway(config)
    gateway.set_table(await _load(load_table) or RouteTable(), began)
    wakeups = notify.Listener(listener) if listener else None
    if wakeups is not None:
        wakeups.start()
        gateway.request_reload = wakeups.woken.set
    else:
        wanted = asyncio.Event()
        gateway.request_reload = wanted.set
    await gateway.start()
    try:
        while parent_pid is None or os.getppid() == parent_pid:
            if wakeups is not None:
                woken = await wakeups.wait(config.reload_interval)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wanted.wait(), config.reload_interval)
                wanted.clear()
                woken = set()
            if woken:  # topics come from other processes; a reload asked for by a request has none
                for name in relay_to:
                    notify.notify(name)
            else:
                # Only requests asked (or nobody: the fallback poll): at most one such reload
                # per gap. A change signalled meanwhile is read at once; changes signalled
                # during a reload are read together by the next.
                await asyncio.sleep(max(0.0, ASKED_RELOAD_GAP - (loop.time() - began)))
            began = loop.time()
            table = await _load(load_table)
            if table is not None:
                gateway.set_table(table, began)
    finally:
        if wakeups is not None:
            wakeups.close()
        await gateway.close()
