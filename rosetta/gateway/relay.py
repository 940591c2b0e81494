"""The gateway's relay: client and upstream connections, and the bytes between them.

asyncio Protocols (no streams), httptools parsing request heads only, one upstream connection
pinned to each client connection, responses relayed as raw bytes. For each request head the
relay gathers what the access policy needs (``policy.RequestHead``), asks ``policy.decide``,
and carries the decision out: it forwards, or answers with one of ``pages``.

Consequences worth knowing:

- When the upstream closes its connection, the client's is closed too.
- Responses are not parsed, so the relay does not know where one ends. It needs not while a
  client waits for each response before sending its next request, as browsers do. A client
  that pipelines (sends a request before the previous response began) turns its connection
  serial: from then on each response is delimited with httptools (``ResponseEnd``), and the
  next request waits until it ended, so responses keep their order whatever their targets.
- A response the gateway makes itself ends the connection: the gateway half-closes at once,
  drops what the client still sends for a moment (so the client reads the answer rather than
  a reset), then closes.
- An upgrade request is tunnelled, bytes both ways, only once the upstream answered
  101 Switching Protocols; otherwise the connection goes on parsing requests.
- Each client address may have ``max_in_flight_per_client`` requests waiting for their
  response's first bytes; its further requests wait their turn, so one client's many busy
  connections cannot starve everyone else's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.parse
from collections import deque
from typing import TYPE_CHECKING, Protocol

import httptools

from rosetta.accounts.tokens import TOKEN_PREFIX, hash_token
from rosetta.computing.errors import ComputingError
from rosetta.gateway import pages
from rosetta.gateway.clients import cap_key
from rosetta.gateway.policy import (
    Forward,
    Grant,
    Login,
    Redirect,
    Refuse,
    RequestHead,
    Unavailable,
    complete_login,
    decide,
    too_large,
    unlimited,
)
from rosetta.gateway.routes import Route

if TYPE_CHECKING:
    from rosetta.gateway.access import AccessVerifier
    from rosetta.gateway.policy import Site
    from rosetta.gateway.routes import RouteTable

log = logging.getLogger("rosetta.gateway.proxy")


class RelayConfig(Protocol):
    """The settings a connection reads: its timeouts, and where the platform's own pages are."""

    first_byte_timeout: float
    head_timeout: float
    idle_timeout: float
    platform_upstream: tuple[str, int] | str


class TokenRecord(Protocol):
    async def claim(self, nonce: str, expires: int) -> bool: ...


class Gateway(Protocol):
    """What a connection needs of the gateway that accepted it (rosetta.gateway.proxy.Gateway is one)."""

    config: RelayConfig
    site: Site
    table: RouteTable
    verifier: AccessVerifier
    used_tokens: TokenRecord
    trusted_proxies: frozenset[str]
    draining: bool
    watch_period: float
    https: bool
    forwarded_proto: bytes
    cookie_prefix: bytes
    table_time: float
    table_generation: int
    access_generation: int

    def admit(self, connection: ClientConnection, address: str) -> ClientShare | None: ...

    def release(self, connection: ClientConnection) -> None: ...

    def task_id_from_host(self, host: bytes) -> str | None: ...

    def set_cookie(self, value: str) -> str: ...

    async def table_read_since(self, moment: float, generation: int = 0) -> None: ...


MAX_HEAD_BYTES = 64 * 1024
MAX_LOGIN_BODY_BYTES = 8 * 1024
UPSTREAM_WRITE_BUFFER = 256 * 1024  # bytes queued towards an upstream before the client is paused
# The kernel's buffer of the unix socket to the platform's web process (default ~208 KiB): uploads
# to storages then go across in reads of ~500 KiB rather than ~200 KiB, with a third of the
# gateway's partial writes and pauses, and a third of its CPU time per GiB uploaded.
PLATFORM_SEND_BUFFER = 1024 * 1024
UPSTREAM_CONNECT_TIMEOUT = 10.0
LINGER_TIME = 2.0  # how long a connection the gateway answered itself drops what the client still sends
QUIET_GRACE = 1.0  # a client gone (half-closed) or a draining gateway: close once nothing moved this long
MAX_BACKLOG = 256  # requests (and their body chunks) a connection may queue behind an unfinished response

_BEARER_PREFIX = b"bearer " + TOKEN_PREFIX.encode()
_VERSIONS = {"1.1": b" HTTP/1.1\r\n", "1.0": b" HTTP/1.0\r\n"}

# Request headers the relay looks at; all others are forwarded as they are.
_HOST, _COOKIE, _AUTHORIZATION, _ACCEPT, _ORIGIN, _LENGTH, _TRANSFER, _CONNECTION, _UPGRADE, _DROP = range(10)
_HOP_BY_HOP = (b"keep-alive", b"proxy-connection", b"te", b"trailer")
# Client-supplied forwarding headers would be spoofable: the gateway sets its own.
_FORWARDING = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip")
_HEADER_KINDS = {
    b"host": _HOST,
    b"cookie": _COOKIE,
    b"authorization": _AUTHORIZATION,
    b"accept": _ACCEPT,
    b"origin": _ORIGIN,
    b"content-length": _LENGTH,
    b"transfer-encoding": _TRANSFER,
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
    **dict.fromkeys(_HOP_BY_HOP + _FORWARDING, _DROP),
}
# Connection options that name no header to drop beyond the ones above.
_CONNECTION_OPTIONS = frozenset((b"close", b"upgrade", *_HOP_BY_HOP))

# RequestHead without NamedTuple's Python-level __new__ (every field given, in order): it runs per request.
_new_head = tuple.__new__

# What the client connection does with the rest of the current request.
_FORWARD = 0  # relay its body to the upstream
_LOGIN = 1  # collect a small form body for LOGIN_PATH
_DISCARD = 2  # the gateway answered; the connection is ending
_QUEUED = 3  # it waits in the backlog behind an unfinished response or a fresher route table

# Events of requests waiting in a connection's backlog.
_HEAD, _BODY, _END, _SWITCH = range(4)


class ClientShare:
    """What one client address holds of the gateway: its connections, and how many of them
    wait for a response (``in_flight``, at most ``limit``; the others wait their turn)."""

    __slots__ = ("address", "connections", "in_flight", "limit", "full", "waiting")

    def __init__(self, address: str, limit: int) -> None:
        self.address = address
        self.connections = 0
        self.in_flight = 0
        self.limit = limit
        self.full = False
        self.waiting: deque[ClientConnection] = deque()

    def take(self) -> None:
        self.in_flight += 1
        self.full = self.in_flight >= self.limit

    def give_back(self) -> None:
        self.in_flight -= 1
        if self.full:  # never more than the limit in flight: one fewer is room again
            self.full = False
            if self.waiting:
                self.pass_turn()

    def pass_turn(self) -> None:
        """The slot just given back goes to the longest waiting connection (run soon, not
        from inside the callback that freed it)."""
        self.take()
        asyncio.get_running_loop().call_soon(self.waiting.popleft().take_turn)


class ResponseEnd:
    """Finds where the upstream's answer to one request ends, for the exchanges that need it:
    a request to switch protocols, and every exchange of a client that pipelines."""

    __slots__ = ("parser", "head_request", "upgrade_requested", "informational", "ended", "switched", "unframeable")

    def __init__(self, head_request: bool, upgrade_requested: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.head_request = head_request  # the answer to HEAD ends with its head, whatever it announces
        self.upgrade_requested = upgrade_requested
        self.informational = False
        self.ended = False
        self.switched = False
        self.unframeable = False  # not HTTP as expected: where it ends cannot be known

    def feed(self, data: bytes) -> None:
        if self.ended or self.unframeable:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # on_headers_complete saw the 101 already
        except httptools.HttpParserError:
            if not self.ended:
                self.unframeable = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status == 101:
            if self.upgrade_requested:
                self.ended = self.switched = True
            else:
                self.unframeable = True  # a task may not turn a plain request into a tunnel
        elif 100 <= status < 200:
            self.informational = True  # 100 Continue and the like: the answer is still to come
        elif self.head_request:
            self.ended = True

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
        else:
            self.ended = True


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
        # Request bodies (uploads) go on in larger steps before the client is paused.
        transport.set_write_buffer_limits(high=UPSTREAM_WRITE_BUFFER)

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.active = True
        if client.watching:  # the first bytes of a response: done here, without a call, per request
            if client.exchange is not None:
                client.watch_exchange(data)
                return
            client.watching = False
            if client.in_flight:
                client.in_flight = False
                client.share.give_back()
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
    """One browser/client connection: parses request heads, asks the policy, relays."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.share: ClientShare | None = None
        self.closed = False
        self.ending = False  # the gateway answers this connection's last request itself
        self.lingering = False  # ... and has answered: what the client still sends is dropped
        self.tunnel = False  # after a 101: raw bytes both ways
        self.diverted = False  # tunnel or lingering: data skips the parser
        self.client_eof = False  # the client half-closed (or left)
        self.forwarded_for = b""
        self.peer = b""  # the address that connected
        self.via_terminator = False  # the peer is a trusted TLS terminator, carrying many clients
        self.paused_for: set[str] = set()
        # The request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.reading_head = True
        self.unparsed_head_bytes = 0
        # The request being handled (the one being parsed, unless it waits in the backlog).
        self.mode = _FORWARD
        self.chunked = False
        self.platform_body_left: int | None = None  # a chunked body to the platform, against its limit
        self.login: tuple[str, Route] | None = None
        self.login_body = b""
        # Exchanges: a request forwarded whose response has not begun (or, with ``exchange``, not ended).
        self.watching = False  # the relay looks at the upstream's next bytes (UpstreamConnection.data_received)
        self.forwarded: RequestHead | None = None  # the last request forwarded
        self.serial = False  # the client pipelines: every response is delimited
        self.exchange: ResponseEnd | None = None
        self.switch_rest: bytes | None = None  # what followed an upgrade request, until the upstream answers
        self.backlog: deque[tuple] | None = None  # events of requests that must wait
        self.waiting: asyncio.Task | None = None  # for a fresher route table, or the login's record
        # Fair share: holding one of this address's in-flight slots; waiting for one.
        self.in_flight = False
        self.turn_wanted = False
        # The pinned upstream: a task id, or "" for the platform.
        self.upstream: UpstreamConnection | None = None
        self.upstream_transport: asyncio.Transport | None = None
        self.upstream_target: str | None = None
        self.upstream_pending: list[bytes] = []
        self.connecting: asyncio.Task | None = None
        # Host header -> task id and forwarding headers, for keep-alive where the Host never changes.
        self.last_host: bytes | None = None
        self.last_task_id: str | None = None
        self.forwarding_headers = b""
        # Timeouts: a periodic check instead of a timer reset per packet keeps the hot path cheap.
        self.active = False  # bytes moved since the last check
        self.silent = True  # no byte ever came from the client
        self.opened = 0.0
        self.quiet_since = 0.0
        self.head_started: float | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.linger: asyncio.TimerHandle | None = None

    # -- transport events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else "unix"
        self.via_terminator = address in self.gateway.trusted_proxies
        # An IPv6 client counts by its /64. A terminator's connections each count on their own:
        # they carry many clients, whom the terminator limits (and names, see ``client_named``).
        self.share = self.gateway.admit(self, f"{address} #{id(self)}" if self.via_terminator else cap_key(address))
        if self.share is None:  # over a connection cap: no reading, no answer
            self.closed = True
            transport.abort()
            return
        self.forwarded_for = self.peer = address.encode()
        self.loop = asyncio.get_running_loop()
        self.opened = self.quiet_since = self.head_started = self.loop.time()
        self.arm_watchdog()

    def arm_watchdog(self) -> None:
        gateway = self.gateway
        period = QUIET_GRACE / 2 if self.client_eof or gateway.draining else gateway.watch_period
        self.watchdog = self.loop.call_later(period, self.check_timeouts)

    def rearm_watchdog(self) -> None:
        """Check again soon: the client left, or the gateway drains."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        if not self.closed:
            self.arm_watchdog()

    def check_timeouts(self) -> None:
        """Close connections that hold a socket without using it: one that never sends a
        byte, a head that never completes (slowloris), no bytes either way for the idle
        timeout, and — once the client left or the gateway drains — nothing moving for a
        moment while no response is owed. WebSocket tunnels are left alone until then;
        their applications ping as they see fit."""
        self.watchdog = None
        if self.closed:
            return
        config = self.gateway.config
        now = self.loop.time()
        moved, self.active = self.active, False
        if moved:
            self.silent = False
            self.quiet_since = now
        elif self.in_flight:
            self.release_slot()  # a long poll keeps nothing busy: let the address's other requests go
        quiet = now - self.quiet_since
        if self.tunnel:
            if self.client_eof and quiet >= QUIET_GRACE:
                self.close()
            elif self.client_eof or self.gateway.draining:
                self.arm_watchdog()
            return
        if self.silent and now - self.opened >= config.first_byte_timeout:
            self.close()
            return
        if self.head_started is not None and now - self.head_started > config.head_timeout:
            if self.head_size or self.unparsed_head_bytes:
                self.refuse(408, "Request Timeout", "Request timeout", "The request head did not arrive in time.")
            else:
                self.close()
            return
        leaving = self.client_eof or self.gateway.draining
        if quiet >= config.idle_timeout or (leaving and quiet >= QUIET_GRACE and not self.owes_response()):
            self.close()
            return
        self.arm_watchdog()

    def data_received(self, data: bytes) -> None:
        self.active = True
        if self.diverted:
            if self.tunnel:
                self.send_upstream(data)
            return  # lingering: what follows a response of the gateway's own is dropped
        head_was_incomplete = self.reading_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.switch_requested(data[upgrade.args[0] :])
            return
        except httptools.HttpParserError:
            if not self.ending:
                self.refuse(400, "Bad Request", "Bad request", "The gateway could not parse this request.")
            return
        if head_was_incomplete and self.reading_head and not self.ending:
            # httptools buffers a header line until it ends; bound what it may hold.
            self.unparsed_head_bytes += len(data)
            if self.unparsed_head_bytes > MAX_HEAD_BYTES:
                self.head_too_large()

    def owes_response(self) -> bool:
        """Whether a request of this client still waits for (the beginning of) its response,
        or a response is still on its way out."""
        return bool(
            self.watching
            or self.backlog
            or self.connecting is not None
            or self.waiting is not None
            or self.transport.get_write_buffer_size()
        )

    def eof_received(self) -> bool:
        if self.lingering or not (self.tunnel or self.owes_response()):
            return False  # nothing more for this client: close now
        if not self.tunnel and not self.reading_head:
            return False  # it left half-way through a request's body (an upload): that request cannot complete
        # A half-closing client may still read what it is owed: the connection closes once
        # that response ended (delimited from here when it has not begun yet), or else once
        # nothing moved for a moment, whether or not the upstream closes.
        self.client_eof = True
        if self.watching and self.exchange is None:
            self.exchange = ResponseEnd(self.forwarded.method == b"HEAD", False)
        if self.tunnel and self.upstream_transport is not None and self.upstream_transport.can_write_eof():
            self.upstream_transport.write_eof()
        self.rearm_watchdog()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.share is None:  # refused at admission
            return
        for timer in (self.watchdog, self.linger):
            if timer is not None:
                timer.cancel()
        if self.waiting is not None:
            self.waiting.cancel()
        if self.in_flight:
            self.release_slot()
        self.gateway.release(self)
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

    # -- fair share between client addresses ---------------------------------------------

    def wait_for_turn(self) -> None:
        """Its address has as many requests in flight as it may: this connection's next request
        waits in the backlog until one of them is answered."""
        if not self.turn_wanted:
            self.turn_wanted = True
            self.share.waiting.append(self)

    def take_turn(self) -> None:
        """A slot of this address was set aside for this connection (ClientShare.pass_turn)."""
        self.turn_wanted = False
        self.in_flight = True
        if not self.closed:
            self.replay()
        if self.in_flight and not self.watching:  # it forwarded nothing (an answer of its own, say)
            self.release_slot()

    def release_slot(self) -> None:
        self.in_flight = False
        self.share.give_back()

    # -- httptools callbacks ------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4

    def on_message_begin(self) -> None:
        if self.head_started is None:
            self.head_started = self.loop.time()

    def on_headers_complete(self) -> None:
        """Gather the head's facts and the headers to forward in one pass, then ask the policy."""
        self.reading_head = False
        arrived, self.head_started = self.head_started or 0.0, None
        if self.closed or self.ending:
            return
        url = self.url
        if self.head_size > MAX_HEAD_BYTES:
            self.head_too_large()
            return
        if url[:1] != b"/" and url != b"*":
            # Absolute-form and CONNECT targets could name another origin than the Host we route by.
            self.refuse(400, "Bad Request", "Bad request", "The gateway only accepts origin-form request targets.")
            return
        parser = self.parser
        method = parser.get_method()
        gateway = self.gateway
        # The request line, once known to be needed; the client's Authorization headers, which
        # the task's secret replaces (``forward``); then the other headers, as they came.
        parts = [b"", b""]
        host = origin = content_length = connection = None
        cookies = upgrade_at = None  # where in parts their values are
        api_token = None  # an Authorization header that may hold a Rosetta API token
        accepts_html = chunked = False
        via_terminator, named_client = self.via_terminator, None
        for name, value in self.headers:
            kind = _HEADER_KINDS.get(name.lower())
            if kind is None:
                parts += (name, b": ", value, b"\r\n")
            elif kind is _HOST:
                if host is not None:
                    self.refuse(400, "Bad Request", "Bad request", "The request has more than one Host header.")
                    return
                host = value
                parts += (name, b": ", value, b"\r\n")
            elif kind is _COOKIE:
                if gateway.cookie_prefix in value:
                    cookies = [*(cookies or ()), len(parts) + 2]
                parts += (name, b": ", value, b"\r\n")
            elif kind is _AUTHORIZATION:
                if value[:11].lower() == _BEARER_PREFIX and api_token is None:
                    api_token = (name, value)
                else:
                    parts[1] += name + b": " + value + b"\r\n"
            elif kind is _ACCEPT:
                accepts_html = b"text/html" in value
                parts += (name, b": ", value, b"\r\n")
            elif kind is _ORIGIN:
                origin = value
                parts += (name, b": ", value, b"\r\n")
            elif kind is _LENGTH:
                content_length = int(value) if value.isdigit() else None
                parts += (name, b": ", value, b"\r\n")
            elif kind is _TRANSFER:
                chunked = b"chunked" in value.lower()
                parts += (name, b": ", value, b"\r\n")
            elif kind is _CONNECTION:
                connection = value if connection is None else connection + b"," + value
            elif kind is _UPGRADE:
                upgrade_at = len(parts)
                parts += (name, b": ", value, b"\r\n")
            elif via_terminator and name.lower() == b"x-forwarded-for":  # otherwise dropped: spoofable
                named_client = value
        if via_terminator:
            self.client_named(named_client)
        connection_line = b"\r\n"
        upgrade = False
        if connection is not None:
            options = {option.strip() for option in connection.lower().split(b",")}
            if not options <= _CONNECTION_OPTIONS:
                self.drop_connection_listed(options, arrived)
                return
            if b"close" in options:
                connection_line = b"Connection: close\r\n\r\n"
        if upgrade_at is not None:
            upgrade = parser.should_upgrade()
            if upgrade:
                connection_line = b"Connection: Upgrade\r\n\r\n"
            else:
                parts[upgrade_at : upgrade_at + 4] = (b"", b"", b"", b"")  # hop-by-hop unless switching protocols
        host = host or b""
        if host != self.last_host:
            self.learn_host(host)
        task_id = self.last_task_id
        cookie_users = ()
        bearer_user = None
        if task_id is not None:  # the task must see neither the access cookie nor a Rosetta API token
            if cookies is not None:
                cookie_users = self.take_access_cookies(parts, cookies, task_id)
            if api_token is not None:
                bearer_user = gateway.table.token_users.get(hash_token(api_token[1][7:].strip().decode("latin-1")))
        if api_token is not None and bearer_user is None:  # the platform's to check, or a task's own token
            parts[1] += api_token[0] + b": " + api_token[1] + b"\r\n"
        parts[0] = method + b" " + url + _VERSIONS.get(parser.get_http_version(), b" HTTP/1.1\r\n")
        parts += (self.forwarding_headers, connection_line)
        head = _new_head(
            RequestHead,
            (
                method,
                url,
                task_id,
                origin,
                cookie_users,
                bearer_user,
                upgrade,
                content_length,
                accepts_html,
                arrived,
                gateway.table_time,
                gateway.table_generation < gateway.access_generation,
                True,
            ),
        )
        if self.backlog is not None or self.watching or (self.share.full and not self.in_flight):
            self.queue(head, parts, chunked)
        else:
            self.act(head, parts, chunked)

    def client_named(self, forwarded_for: bytes | None) -> None:
        """The client a trusted terminator names for this request (the last address of its
        X-Forwarded-For; the terminator's own address when it names none, or no valid one):
        what the forwarding headers say from now on."""
        client = self.peer
        if forwarded_for is not None:
            named = forwarded_for.rpartition(b",")[2].strip()
            try:
                socket.inet_pton(socket.AF_INET6 if b":" in named else socket.AF_INET, named.decode("ascii"))
                client = named
            except (OSError, UnicodeDecodeError, ValueError):
                pass
        if client != self.forwarded_for:
            self.forwarded_for = client
            self.last_host = None  # the forwarding headers are made again for the next request

    def drop_connection_listed(self, options: set[bytes], arrived: float) -> None:
        """The rare head whose Connection header names more hop-by-hop headers (never Host,
        which routes the request): handle it again without them."""
        listed = options - _CONNECTION_OPTIONS - {b"host"}
        kept = [(name, value) for name, value in self.headers if name.lower() not in listed | {b"connection"}]
        if options & _CONNECTION_OPTIONS:
            kept.append((b"Connection", b", ".join(sorted(options & _CONNECTION_OPTIONS))))
        self.headers = kept
        self.head_started = arrived
        self.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.mode == _QUEUED:
            self.backlog.append((_BODY, body))
        else:
            self.take_body(body)

    def on_message_complete(self) -> None:
        mode = self.mode
        if mode == _QUEUED:
            self.backlog.append((_END,))
        elif mode != _FORWARD or self.chunked:
            self.end_request()
        self.url = b""
        self.headers = []
        self.head_size = 0
        self.reading_head = True
        self.unparsed_head_bytes = 0

    # -- handling a request -------------------------------------------------------------

    def learn_host(self, host: bytes) -> None:
        gateway = self.gateway
        self.last_host = host
        self.last_task_id = gateway.task_id_from_host(host)
        quoted_host = b'"' + host.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        forwarded_for = self.forwarded_for
        if b":" in forwarded_for:
            forwarded_for = b'"[' + forwarded_for + b']"'
        elif forwarded_for == b"unix":
            forwarded_for = b"unknown"
        proto = gateway.forwarded_proto
        self.forwarding_headers = b"".join(
            (
                b"X-Forwarded-For: " + self.forwarded_for,
                b"\r\nX-Forwarded-Proto: " + proto,
                b"\r\nX-Forwarded-Host: " + host,
                b"\r\nX-Real-IP: " + self.forwarded_for,
                b"\r\nForwarded: for=" + forwarded_for + b";proto=" + proto + b";host=" + quoted_host + b"\r\n",
            )
        )

    def take_access_cookies(self, parts: list[bytes], at: list[int], task_id: str) -> tuple[tuple[int, int], ...]:
        """Remove the access cookies from the Cookie headers; who the valid ones name."""
        gateway = self.gateway
        prefix = gateway.cookie_prefix
        holders = []
        for index in at:
            others = []
            for pair in parts[index].split(b";"):
                pair = pair.strip()
                if pair.startswith(prefix):
                    # Several can arrive when a sibling origin tosses a cookie of the same name.
                    holder = gateway.verifier.check_cookie(pair[len(prefix) :].decode("latin-1"), task_id)
                    if holder is not None:
                        holders.append(holder)
                elif pair:
                    others.append(pair)
            if others:
                parts[index] = b"; ".join(others)
            else:
                parts[index - 2 : index + 2] = (b"", b"", b"", b"")
        return tuple(holders)

    def queue(self, head: RequestHead, parts: list[bytes], chunked: bool) -> None:
        if self.watching and self.exchange is None:
            # Sent before the previous response began: the client pipelines. Its responses are
            # delimited from here on, and each request waits for the previous one's end.
            self.serial = True
            self.exchange = ResponseEnd(self.forwarded.method == b"HEAD", False)
        if self.backlog is None:
            self.backlog = deque()
            self.hold_reading("backlog")
        elif len(self.backlog) >= MAX_BACKLOG:
            self.close()  # pipelining by the hundred is no client's need: what it queues costs memory
            return
        self.backlog.append((_HEAD, head, parts, chunked))
        self.mode = _QUEUED
        if self.share.full and not self.in_flight and not self.watching and self.waiting is None:
            self.wait_for_turn()  # only its address's share holds it back

    def replay(self) -> None:
        """Handle the requests of the backlog, in order, as far as nothing holds them."""
        backlog = self.backlog
        gateway = self.gateway
        while backlog and not self.ending and not self.closed:
            event = backlog[0]
            kind = event[0]
            if kind == _HEAD:
                if self.watching or self.waiting is not None:
                    return
                if self.share.full and not self.in_flight:
                    self.wait_for_turn()
                    return
                backlog.popleft()
                head = event[1]._replace(
                    table_read_at=gateway.table_time,
                    access_may_have_changed=gateway.table_generation < gateway.access_generation,
                )
                self.mode = _FORWARD
                self.act(head, event[2], event[3])
            else:
                backlog.popleft()
                if kind == _BODY:
                    self.take_body(event[1])
                elif kind == _END:
                    self.end_request()
                else:
                    self.await_switch(event[1])
        if self.backlog is backlog and not backlog:
            self.backlog = None
            self.release_reading("backlog")

    def act(self, head: RequestHead, parts: list[bytes], chunked: bool) -> None:
        gateway = self.gateway
        decision = decide(head, gateway.table, gateway.site)
        kind = type(decision)
        if kind is Forward:
            self.forward(head, parts, chunked, decision.route)
        elif kind is Login:
            self.mode = _LOGIN
            self.login = (head.task_id, decision.route)
            self.login_body = b""
        elif kind is Refuse or kind is Redirect or kind is Unavailable:
            self.answer(decision)
        else:
            self.defer(head, parts, chunked)

    def defer(self, head: RequestHead, parts: list[bytes], chunked: bool) -> None:
        if self.backlog is None:
            self.backlog = deque()
            self.hold_reading("backlog")
        self.backlog.appendleft((_HEAD, head, parts, chunked))
        self.mode = _QUEUED
        self.waiting = self.loop.create_task(self.wait_for_table(head))

    async def wait_for_table(self, head: RequestHead) -> None:
        await self.gateway.table_read_since(head.arrived, self.gateway.access_generation)
        self.waiting = None
        if self.closed or not self.backlog:
            return
        _, waited, parts, chunked = self.backlog[0]
        self.backlog[0] = (_HEAD, waited._replace(may_wait=False), parts, chunked)
        self.replay()

    def take_body(self, body: bytes) -> None:
        mode = self.mode
        if mode == _FORWARD:
            if not self.chunked:
                self.send_upstream(body)
                return
            if self.platform_body_left is not None:
                self.platform_body_left -= len(body)
                if self.platform_body_left < 0:
                    self.body_too_large()
                    return
            self.send_upstream(b"%x\r\n%b\r\n" % (len(body), body))
        elif mode == _LOGIN:
            self.login_body += body
            if len(self.login_body) > MAX_LOGIN_BODY_BYTES:
                self.refuse(413, "Content Too Large", "Request too large", "The login form is too large.")

    def end_request(self) -> None:
        mode = self.mode
        if mode == _FORWARD:
            if self.chunked:
                self.send_upstream(b"0\r\n\r\n")
        elif mode == _LOGIN:
            self.complete_login()
        self.chunked = False
        self.platform_body_left = None
        if mode != _DISCARD:
            self.mode = _FORWARD

    def body_too_large(self) -> None:
        if self.watching and self.exchange is None:  # the platform has not answered: the gateway can
            self.answer(too_large(self.gateway.site))
        else:
            self.close()

    # -- upgrades -------------------------------------------------------------------------

    def switch_requested(self, rest: bytes) -> None:
        """httptools stopped after an upgrade request; ``rest`` is what followed it."""
        if self.mode == _QUEUED:
            self.backlog.append((_SWITCH, rest))
        else:
            self.await_switch(rest)

    def await_switch(self, rest: bytes) -> None:
        if self.ending or self.exchange is None or not self.exchange.upgrade_requested:
            return  # answered by the gateway: the connection ends
        self.switch_rest = rest
        self.hold_reading("upgrade")

    # -- exchanges with the upstream -------------------------------------------------------

    def watch_exchange(self, data: bytes) -> None:
        """Upstream bytes of a response the relay delimits: it may end, or switch protocols."""
        if self.in_flight:
            self.release_slot()
        self.transport.write(data)
        exchange = self.exchange
        exchange.feed(data)
        if exchange.unframeable:
            # Where this response ends cannot be known: nothing may follow it on this connection.
            self.ending = True
            self.backlog = None
            self.exchange = None
        elif exchange.ended:
            self.exchange_ended(exchange.switched)

    def exchange_ended(self, switched: bool) -> None:
        self.exchange = None
        self.watching = False
        rest, self.switch_rest = self.switch_rest, None
        if switched:
            self.tunnel = self.diverted = True
            if rest:
                self.send_upstream(rest)
            self.release_reading("upgrade")
            return
        if rest is not None:  # not switched: the connection goes on with HTTP
            self.release_reading("upgrade")
            if rest:
                self.data_received(rest)
        if self.backlog is not None:
            self.replay()
        elif self.client_eof:
            self.close()  # the client left, and has its answer

    # -- forwarding ---------------------------------------------------------------------

    def forward(self, head: RequestHead, parts: list[bytes], chunked: bool, route: Route | None) -> None:
        target = head.task_id or ""
        if target != self.upstream_target:
            address = self.gateway.config.platform_upstream if route is None else route.upstream
            self.open_upstream(target, address, route)
        if route is not None and route.authorization is not None:
            parts[1] = route.authorization  # the task's secret, whatever the client sent
        if self.upstream_transport is not None:
            self.upstream_transport.write(b"".join(parts))
        else:
            self.upstream_pending.append(b"".join(parts))
        self.chunked = chunked
        self.forwarded = head
        self.watching = True
        if not self.in_flight:  # ClientShare.take, without a call: this runs per request
            self.in_flight = True
            share = self.share
            share.in_flight += 1
            share.full = share.in_flight >= share.limit
        if self.serial or head.upgrade:
            self.exchange = ResponseEnd(head.method == b"HEAD", head.upgrade)
        if chunked and route is None and not unlimited(head.method, head.target):
            self.platform_body_left = self.gateway.site.max_platform_body

    def send_upstream(self, data: bytes) -> None:
        if self.upstream_transport is not None:
            self.upstream_transport.write(data)
        else:
            self.upstream_pending.append(data)

    def open_upstream(self, target: str, address: tuple[str, int] | str, route: Route | None) -> None:
        self.drop_upstream()
        self.upstream_target = target
        self.hold_reading("connecting")
        self.connecting = self.loop.create_task(self.connect(target, address, route))

    async def connect(self, target: str, address: tuple[str, int] | str, route: Route | None) -> None:
        loop = self.loop
        upstream = UpstreamConnection(self)
        try:
            # One deadline in this task: wait_for would make a task of each step, and where a
            # task closes its connection after each response (remote tasks' busybox, say) this
            # runs per request.
            async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT):
                if route is not None and route.reach is not None:
                    address = await route.reach(*address)
                if isinstance(address, str):
                    transport, _ = await loop.create_unix_connection(lambda: upstream, address)
                else:
                    transport, _ = await loop.create_connection(lambda: upstream, address[0], address[1])
        except (OSError, TimeoutError, ComputingError) as error:
            self.connecting = None
            if not self.closed:
                self.upstream_unavailable(route, str(error) if isinstance(error, ComputingError) else "")
            return
        if self.closed or self.upstream_target != target:
            upstream.detach()
            return
        self.upstream = upstream
        self.upstream_transport = transport
        if route is None:
            _larger_send_buffer(transport)
        if self.upstream_pending:
            transport.write(b"".join(self.upstream_pending))
            self.upstream_pending = []
        self.connecting = None
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

    def upstream_unavailable(self, route: Route | None, reason: str = "") -> None:
        """Nothing answers where the request should go: a page, never a bare 502."""
        https = self.gateway.https
        if route is None:
            log.warning("gateway: the platform upstream is not answering")
            self.finish_with(pages.platform_starting(https))
        else:
            self.answer(Unavailable(route, reason))

    # -- the login form -------------------------------------------------------------------

    def complete_login(self) -> None:
        task_id, route = self.login
        self.ending = True  # whatever the outcome, the connection ends with its answer
        self.hold_reading("login")
        self.waiting = self.loop.create_task(self.redeem(task_id, route, self.login_body))

    async def redeem(self, task_id: str, route: Route, body: bytes) -> None:
        gateway = self.gateway
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        token = gateway.verifier.read_token(form.get("token", [""])[0], task_id)
        if token is not None and not await gateway.used_tokens.claim(token.nonce, token.expires):
            token = None
        self.waiting = None
        if self.closed:
            return
        decision = complete_login(token, task_id, route, gateway.table, form.get("next", ["/"])[0], gateway.site)
        if type(decision) is Grant:
            cookie = gateway.verifier.make_cookie(decision.user_id, task_id, epoch=decision.epoch)
            self.finish_with(pages.signed_in(gateway.set_cookie(cookie), decision.location, gateway.https))
        else:
            self.answer(decision)

    # -- the gateway's own responses ----------------------------------------------------

    def head_too_large(self) -> None:
        self.refuse(431, "Request Header Fields Too Large", "Request too large", "The request head is too large.")

    def refuse(self, status: int, reason: str, title: str, message: str) -> None:
        self.answer(Refuse(status, reason, title, message))

    def answer(self, decision: Refuse | Redirect | Unavailable) -> None:
        https = self.gateway.https
        kind = type(decision)
        if kind is Refuse:
            response = pages.refusal(decision, https, self.gateway.site.public_url)
            log.debug("gateway: refused a request to %s: %d", self.last_task_id or "-", decision.status)
        elif kind is Redirect:
            response = pages.redirect(decision, https)
        else:
            response = pages.unavailable(decision, self.gateway.site.public_url, https)
        self.finish_with(response)

    def finish_with(self, response: bytes) -> None:
        """Send the gateway's own response and end the connection: nothing after it is read
        as a request, whatever the client announced."""
        if self.closed or self.lingering:
            return
        self.ending = self.lingering = self.diverted = True
        self.mode = _DISCARD
        self.backlog = None
        self.drop_upstream()
        if self.in_flight:
            self.release_slot()
        transport = self.transport
        transport.write(response)
        if not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        # Read on (and drop) for a moment: closing with unread bytes would reset the
        # connection, and the client might lose the response before reading it.
        self.paused_for.clear()
        transport.resume_reading()
        self.linger = self.loop.call_later(LINGER_TIME, self.close)


def _larger_send_buffer(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PLATFORM_SEND_BUFFER)
