"""The gateway's relay: client and upstream connections, and the bytes between them.

asyncio Protocols (no streams), httptools parsing request heads only, one upstream connection
pinned to each client connection, responses relayed as raw bytes. For each request head the
relay has ``head.scan`` read its facts and the headers to forward, adds what the access policy
needs from the gateway's state (``policy.RequestHead``: the task the Host names, who the
access cookies and API token name), asks ``policy.decide``, and carries the decision out: it
forwards (with the credential the policy chose), or answers with one of ``pages``. What a
connection does with its client's bytes is one ``State`` at a time, changed in ``move`` only.

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
  response's first bytes; its further requests wait their turn (``admission``), so one
  client's many busy connections cannot starve everyone else's.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import urllib.parse
from collections import deque
from typing import TYPE_CHECKING, Protocol

import httptools

from rosetta.accounts.tokens import hash_token
from rosetta.computing.errors import ComputingError
from rosetta.gateway import pages
from rosetta.gateway.head import MAX_HEAD_BYTES, BadHead, scan
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
    from rosetta.gateway.access import CookieHolder, OneTimeToken
    from rosetta.gateway.admission import Admission, ClientShare
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


class Credentials(Protocol):
    """Reads the one-time tokens and access cookies of the gateway (access.AccessVerifier is one)."""

    def read_token(self, token: str, task_id: str) -> OneTimeToken | None: ...

    def make_cookie(self, user_id: int, task_id: str, *, epoch: int) -> str: ...

    def check_cookie(self, value: str, task_id: str) -> CookieHolder | None: ...


class Tally:
    """What passed through one gateway process, in plain numbers: counting costs an addition on
    the way, and the gateway adds the numbers to its metrics every few seconds (rosetta.core.metrics)."""

    __slots__ = ("platform_requests", "task_requests", "bytes_from_clients", "bytes_to_clients",
                 "switched", "switched_ended")  # fmt: skip

    def __init__(self) -> None:
        self.platform_requests = self.task_requests = 0
        self.bytes_from_clients = self.bytes_to_clients = 0
        self.switched = self.switched_ended = 0  # WebSockets (and other upgrades) begun, and ended


class Gateway(Protocol):
    """All a connection uses of the gateway that accepted it, and nothing more
    (rosetta.gateway.proxy.Gateway is one; tests/unit/test_gateway_relay.py keeps them in step)."""

    config: RelayConfig
    site: Site
    table: RouteTable  # the current route table
    table_time: float  # when its database read began (loop time)
    table_generation: int  # the access changes it knows of
    access_generation: int  # the access changes signalled
    verifier: Credentials
    used_tokens: TokenRecord
    admission: Admission
    trusted_proxies: frozenset[str]
    draining: bool
    watch_period: float  # how often a connection checks its timeouts
    https: bool
    forwarded_proto: bytes
    cookie_prefix: bytes  # b"<access cookie name>="
    tally: Tally  # what passed, counted in plain numbers (the gateway hands them to its metrics now and then)

    def task_id_from_host(self, host: bytes) -> str | None: ...

    def set_cookie(self, value: str) -> str: ...

    async def table_read_since(self, moment: float, generation: int = 0) -> None: ...


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

# RequestHead without NamedTuple's Python-level __new__ (every field given, in order): it runs per request.
_new_head = tuple.__new__


class State(enum.IntEnum):
    """What a client connection does with the bytes its client sends — one state at a time.

    In order: the states from LAST_BODY on read no further request, those from SWITCHED on do
    not parse at all. Two things go on beside the state, as they overlap with it when a client
    pipelines: the upstream connection being made (``connecting``) and the response being
    awaited (``watching``, ``exchange``)."""

    READING_HEAD = 0  # the next bytes begin (or go on with) a request head
    QUEUED = 1  # the request waits in the backlog: for a fresher route table, its client's turn, an earlier response
    RELAYING_BODY = 2  # the request was forwarded: its body goes to the upstream
    READING_LOGIN = 3  # the request is the login form: its (small) body is collected
    LAST_BODY = 4  # RELAYING_BODY, but its response cannot be delimited: no request may follow
    FINAL = 5  # no request follows: the login's token is being checked, or a response is relayed to its end
    SWITCHED = 6  # the upstream switched protocols (WebSocket): raw bytes both ways
    ANSWERED = 7  # the gateway answered itself and half-closed: what the client still sends is dropped
    CLOSED = 8


_READING_HEAD, _QUEUED, _RELAYING_BODY, _READING_LOGIN, _LAST_BODY, _FINAL, _SWITCHED, _ANSWERED, _CLOSED = State

# The transitions a connection may make; any other is a bug (``ClientConnection.move`` asserts).
NEXT_STATES: dict[State, frozenset[State]] = {
    _READING_HEAD: frozenset({_QUEUED, _RELAYING_BODY, _READING_LOGIN, _FINAL, _SWITCHED, _ANSWERED, _CLOSED}),
    _QUEUED: frozenset({_READING_HEAD, _RELAYING_BODY, _READING_LOGIN, _FINAL, _ANSWERED, _CLOSED}),
    _RELAYING_BODY: frozenset({_READING_HEAD, _LAST_BODY, _SWITCHED, _ANSWERED, _CLOSED}),
    _READING_LOGIN: frozenset({_FINAL, _ANSWERED, _CLOSED}),
    _LAST_BODY: frozenset({_FINAL, _ANSWERED, _CLOSED}),
    _FINAL: frozenset({_ANSWERED, _CLOSED}),
    _SWITCHED: frozenset({_CLOSED}),
    _ANSWERED: frozenset({_CLOSED}),
    _CLOSED: frozenset(),
}

# Events of requests waiting in a connection's backlog.
_HEAD, _BODY, _END, _SWITCH = range(4)


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
        client.tally.bytes_to_clients += len(data)
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
    """One browser/client connection: reads request heads (``head.scan``), asks the policy
    (``policy.decide``), carries the decision out, relays."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.tally: Tally | None = None  # the gateway's, once connected
        self.loop: asyncio.AbstractEventLoop | None = None
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.share: ClientShare | None = None
        self.state = _READING_HEAD
        self.client_eof = False  # the client half-closed (or left)
        self.peer = b""  # the address that connected
        self.via_terminator = False  # the peer is a trusted TLS terminator, carrying many clients
        self.paused_for: set[str] = set()
        # The request head being parsed (httptools' callbacks), and where the parser is.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.reading_head = True  # in a head, or between requests (else in a body)
        self.unparsed_head_bytes = 0
        # The request being handled (the one being parsed, unless it waits in the backlog).
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
        # Fair share (rosetta.gateway.admission): holding one of its client's in-flight slots; waiting for one.
        self.in_flight = False
        self.turn_wanted = False
        # The pinned upstream: a task id, or "" for the platform.
        self.upstream: UpstreamConnection | None = None
        self.upstream_transport: asyncio.Transport | None = None
        self.upstream_target: str | None = None
        self.upstream_pending: list[bytes] = []
        self.connecting: asyncio.Task | None = None
        # Host header -> task id, for keep-alive where the Host never changes.
        self.last_host: bytes | None = None
        self.last_task_id: str | None = None
        # Timeouts: a periodic check instead of a timer reset per packet keeps the hot path cheap.
        self.active = False  # bytes moved since the last check
        self.silent = True  # no byte ever came from the client
        self.opened = 0.0
        self.quiet_since = 0.0
        self.head_started: float | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.linger: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self.state is _CLOSED

    def move(self, state: State) -> None:
        """The state changes here, as NEXT_STATES allows — and, inlined with the same check, in the
        two places that run per request (``forward``: to RELAYING_BODY; ``on_message_complete``:
        back to READING_HEAD)."""
        assert state in NEXT_STATES[self.state], f"relay: {self.state.name} -> {state.name}"
        self.state = state

    # -- transport events -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.tally = self.gateway.tally
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else "unix"
        self.via_terminator = address in self.gateway.trusted_proxies
        self.share = self.gateway.admission.admit(self, address, self.via_terminator)
        if self.share is None:  # over a connection cap: no reading, no answer
            self.move(_CLOSED)
            transport.abort()
            return
        self.peer = address.encode()
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
        if self.state is not _CLOSED:
            self.arm_watchdog()

    def check_timeouts(self) -> None:
        """Close connections that hold a socket without using it: one that never sends a
        byte, a head that never completes (slowloris), no bytes either way for the idle
        timeout, and — once the client left or the gateway drains — nothing moving for a
        moment while no response is owed. WebSocket tunnels are left alone until then;
        their applications ping as they see fit."""
        self.watchdog = None
        if self.state is _CLOSED:
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
        if self.state is _SWITCHED:
            if self.client_eof and quiet >= QUIET_GRACE:
                self.close()
            elif self.client_eof or self.gateway.draining:
                self.arm_watchdog()
            return
        if self.silent and now - self.opened >= config.first_byte_timeout:
            self.close()
            return
        if self.head_started is not None and now - self.head_started > config.head_timeout:
            if self.url or self.headers or self.unparsed_head_bytes:
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
        self.tally.bytes_from_clients += len(data)
        if self.state >= _SWITCHED:
            if self.state is _SWITCHED:
                self.send_upstream(data)
            return  # answered: what follows a response of the gateway's own is dropped
        head_was_incomplete = self.reading_head
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.switch_requested(data[upgrade.args[0] :])
            return
        except httptools.HttpParserError:
            if self.state < _LAST_BODY:
                self.refuse(400, "Bad Request", "Bad request", "The gateway could not parse this request.")
            return
        if head_was_incomplete and self.reading_head and self.state < _LAST_BODY:
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
        state = self.state
        if state is _ANSWERED or not (state is _SWITCHED or self.owes_response()):
            return False  # nothing more for this client: close now
        if state is not _SWITCHED and not self.reading_head:
            return False  # it left half-way through a request's body (an upload): that request cannot complete
        # A half-closing client may still read what it is owed: the connection closes once
        # that response ended (delimited from here when it has not begun yet), or else once
        # nothing moved for a moment, whether or not the upstream closes.
        self.client_eof = True
        if self.watching and self.exchange is None:
            self.exchange = ResponseEnd(self.forwarded.method == b"HEAD", False)
        if state is _SWITCHED and self.upstream_transport is not None and self.upstream_transport.can_write_eof():
            self.upstream_transport.write_eof()
        self.rearm_watchdog()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is _SWITCHED:
            self.tally.switched_ended += 1
        if self.state is not _CLOSED:
            self.move(_CLOSED)
        if self.share is None:  # refused at admission
            return
        for timer in (self.watchdog, self.linger):
            if timer is not None:
                timer.cancel()
        if self.waiting is not None:
            self.waiting.cancel()
        if self.in_flight:
            self.release_slot()
        self.gateway.admission.release(self, self.share)
        self.drop_upstream()

    def pause_writing(self) -> None:
        if self.upstream_transport is not None:
            self.upstream_transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream_transport is not None:
            self.upstream_transport.resume_reading()

    def hold_reading(self, reason: str) -> None:
        if not self.paused_for and self.state is not _CLOSED:
            self.transport.pause_reading()
        self.paused_for.add(reason)

    def release_reading(self, reason: str) -> None:
        self.paused_for.discard(reason)
        if not self.paused_for and self.state is not _CLOSED:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.state is not _CLOSED:
            self.move(_CLOSED)
            self.transport.close()  # flushes what was already written
        self.drop_upstream()

    # -- fair share between clients (rosetta.gateway.admission) ---------------------------

    def wait_for_turn(self) -> None:
        """Its client has as many requests in flight as it may: this connection's next request
        waits in the backlog until one of them is answered."""
        if not self.turn_wanted:
            self.turn_wanted = True
            self.share.waiting.append(self)

    def take_turn(self) -> None:
        """A slot of this client was set aside for this connection (ClientShare.pass_turn)."""
        self.turn_wanted = False
        self.in_flight = True
        if self.state is not _CLOSED:
            self.replay()
        if self.in_flight and not self.watching:  # it forwarded nothing (an answer of its own, say)
            self.release_slot()

    def release_slot(self) -> None:
        self.in_flight = False
        self.share.give_back()

    # -- httptools callbacks ------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_begin(self) -> None:
        if self.head_started is None:
            self.head_started = self.loop.time()

    def on_headers_complete(self) -> None:
        """Scan the head, gather what the policy needs, and ask it (now, or once it is this request's turn)."""
        self.reading_head = False
        arrived, self.head_started = self.head_started or 0.0, None
        if self.state >= _LAST_BODY:
            return
        gateway = self.gateway
        parser = self.parser
        head = scan(
            parser.get_method(),
            self.url,
            parser.get_http_version(),
            self.headers,
            parser.should_upgrade(),
            self.peer,
            gateway.cookie_prefix,
            gateway.forwarded_proto,
            self.via_terminator,
        )
        if type(head) is BadHead:
            self.refuse(*head)
            return
        # Unpacked at once: cheaper than reading the fields one by one, per request.
        (method, target, host, origin, upgrade, length, chunked, accepts_html,
         cookies, authorization, api_token, api_token_line, _, parts) = head  # fmt: skip
        if host != self.last_host:
            self.last_host = host
            self.last_task_id = gateway.task_id_from_host(host)
        task_id = self.last_task_id
        cookie_users = ()
        bearer_user = None
        bearer_staff = False
        if task_id is not None:  # who the access cookies and a platform API token name
            if cookies:
                check = gateway.verifier.check_cookie
                if len(cookies) == 1:  # as browsers send it: the one case that runs per request
                    holder = check(cookies[0].decode("latin-1"), task_id)
                    cookie_users = () if holder is None else (holder,)
                else:  # a sibling origin tossed one of the same name
                    holders = (check(value.decode("latin-1"), task_id) for value in cookies)
                    cookie_users = tuple(holder for holder in holders if holder is not None)
            if api_token is not None:
                digest = hash_token(api_token.decode("latin-1"))
                bearer_user = gateway.table.token_users.get(digest)
                bearer_staff = digest in gateway.table.admin_tokens
        request = _new_head(
            RequestHead,
            (
                method,
                target,
                task_id,
                origin,
                cookie_users,
                bearer_user,
                upgrade,
                length,
                accepts_html,
                arrived,
                gateway.table_time,
                gateway.table_generation < gateway.access_generation,
                True,
                authorization,
                api_token_line,
                bearer_staff,
            ),
        )
        if self.backlog is not None or self.watching or (self.share.full and not self.in_flight):
            self.queue(request, parts, chunked)
        else:
            self.act(request, parts, chunked)

    def on_body(self, body: bytes) -> None:
        if self.state is _QUEUED:
            self.backlog.append((_BODY, body))
        else:
            self.take_body(body)

    def on_message_complete(self) -> None:
        state = self.state
        if state is _QUEUED:
            self.backlog.append((_END,))
        elif state is _RELAYING_BODY and not self.chunked:
            # end_request and move(_READING_HEAD), without the calls: this runs per request.
            assert _READING_HEAD in NEXT_STATES[state]
            self.state = _READING_HEAD
        else:
            self.end_request()
        self.url = b""
        self.headers = []
        self.reading_head = True
        self.unparsed_head_bytes = 0

    # -- handling a request -------------------------------------------------------------

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
        if self.state is not _QUEUED:
            self.move(_QUEUED)
        if self.share.full and not self.in_flight and not self.watching and self.waiting is None:
            self.wait_for_turn()  # only its address's share holds it back

    def replay(self) -> None:
        """Handle the requests of the backlog, in order, as far as nothing holds them."""
        backlog = self.backlog
        gateway = self.gateway
        while backlog and self.state < _LAST_BODY:
            event = backlog[0]
            kind = event[0]
            if kind == _HEAD:
                if self.watching or self.waiting is not None:
                    break
                if self.share.full and not self.in_flight:
                    self.wait_for_turn()
                    break
                backlog.popleft()
                head = event[1]._replace(
                    table_read_at=gateway.table_time,
                    access_may_have_changed=gateway.table_generation < gateway.access_generation,
                )
                self.act(head, event[2], event[3])
            else:
                backlog.popleft()
                if kind == _BODY:
                    self.take_body(event[1])
                elif kind == _END:
                    self.end_request()
                else:
                    self.await_switch(event[1])
        else:
            if self.backlog is backlog and not backlog:
                self.backlog = None
                self.release_reading("backlog")
            return
        if self.state is _READING_HEAD:
            self.move(_QUEUED)  # the client's next request waits its turn

    def act(self, head: RequestHead, parts: list[bytes], chunked: bool) -> None:
        gateway = self.gateway
        decision = decide(head, gateway.table, gateway.site)
        kind = type(decision)
        if kind is Forward:
            self.forward(head, parts, chunked, decision)
        elif kind is Login:
            self.move(_READING_LOGIN)
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
        if self.state is not _QUEUED:
            self.move(_QUEUED)
        self.waiting = self.loop.create_task(self.wait_for_table(head))

    async def wait_for_table(self, head: RequestHead) -> None:
        await self.gateway.table_read_since(head.arrived, self.gateway.access_generation)
        self.waiting = None
        if self.state is _CLOSED or not self.backlog:
            return
        _, waited, parts, chunked = self.backlog[0]
        self.backlog[0] = (_HEAD, waited._replace(may_wait=False), parts, chunked)
        self.replay()

    def take_body(self, body: bytes) -> None:
        state = self.state
        if state is _RELAYING_BODY or state is _LAST_BODY:
            if not self.chunked:
                self.send_upstream(body)
                return
            if self.platform_body_left is not None:
                self.platform_body_left -= len(body)
                if self.platform_body_left < 0:
                    self.body_too_large()
                    return
            self.send_upstream(b"%x\r\n%b\r\n" % (len(body), body))
        elif state is _READING_LOGIN:
            self.login_body += body
            if len(self.login_body) > MAX_LOGIN_BODY_BYTES:
                self.refuse(413, "Content Too Large", "Request too large", "The login form is too large.")

    def end_request(self) -> None:
        state = self.state
        if state is _RELAYING_BODY or state is _LAST_BODY:
            if self.chunked:
                self.send_upstream(b"0\r\n\r\n")
            self.move(_READING_HEAD if state is _RELAYING_BODY else _FINAL)
        elif state is _READING_LOGIN:
            self.complete_login()
        self.chunked = False
        self.platform_body_left = None

    def body_too_large(self) -> None:
        if self.watching and self.exchange is None:  # the platform has not answered: the gateway can
            self.answer(too_large(self.gateway.site))
        else:
            self.close()

    # -- upgrades -------------------------------------------------------------------------

    def switch_requested(self, rest: bytes) -> None:
        """httptools stopped after an upgrade request; ``rest`` is what followed it."""
        if self.state is _QUEUED:
            self.backlog.append((_SWITCH, rest))
        else:
            self.await_switch(rest)

    def await_switch(self, rest: bytes) -> None:
        if self.state >= _LAST_BODY or self.exchange is None or not self.exchange.upgrade_requested:
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
            if self.state is _RELAYING_BODY:
                self.move(_LAST_BODY)
            elif self.state < _LAST_BODY:
                self.move(_FINAL)
            self.backlog = None
            self.exchange = None
        elif exchange.ended:
            self.exchange_ended(exchange.switched)

    def exchange_ended(self, switched: bool) -> None:
        self.exchange = None
        self.watching = False
        rest, self.switch_rest = self.switch_rest, None
        if switched:
            self.move(_SWITCHED)
            self.tally.switched += 1
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

    def forward(self, head: RequestHead, parts: list[bytes], chunked: bool, decision: Forward) -> None:
        route, parts[1] = decision  # the credential the policy chose, whatever the client sent
        if route is None:
            self.tally.platform_requests += 1
        else:
            self.tally.task_requests += 1
        target = head.task_id or ""
        if target != self.upstream_target:
            address = self.gateway.config.platform_upstream if route is None else route.upstream
            self.open_upstream(target, address, route)
        if self.upstream_transport is not None:
            self.upstream_transport.write(b"".join(parts))
        else:
            self.upstream_pending.append(b"".join(parts))
        # move(_RELAYING_BODY), without the call: this runs per request.
        assert _RELAYING_BODY in NEXT_STATES[self.state], self.state
        self.state = _RELAYING_BODY
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
        self.move(_FINAL)  # whatever the outcome, the connection ends with its answer
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
        if self.state >= _ANSWERED:
            return
        self.move(_ANSWERED)
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
