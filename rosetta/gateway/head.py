"""Reading a request head: the facts the gateway decides by, and the headers it forwards.

``scan`` takes what httptools reported of one head (method, target, HTTP version, the header
lines in order, whether it may switch protocols) and returns either a ``Head`` — the request's
facts and the bytes to send upstream — or a ``BadHead``, the refusal it deserves. It is pure: no
socket, no clock, no route table; the relay calls it from the parser's callbacks, and
``scan_bytes`` feeds it a whole head as bytes, which is how the table tests read it.

httptools (llhttp, strict) already refuses what request smuggling relies on: duplicate or
non-numeric Content-Length, Content-Length with Transfer-Encoding, obs-fold, bare LF or CR,
header names with spaces. What is left to do here:

- hop-by-hop headers (Keep-Alive, TE, Trailer, Proxy-Connection, Upgrade unless switching
  protocols, and every header the Connection header lists) are dropped; the gateway writes its
  own Connection line;
- the platform's access cookies are taken out of the Cookie headers (their values are facts:
  the gateway checks them), and Authorization headers are set aside for ``policy.decide``,
  which chooses the credential that reaches the upstream (``Head.authorization`` and
  ``Head.api_token_line`` are the client's; the request's second part is left empty for it);
- client-supplied forwarding headers (X-Forwarded-*, Forwarded, X-Real-IP) are dropped and the
  gateway's own set, naming the connection's peer — or, for a trusted TLS terminator, the client
  its X-Forwarded-For names last;
- a second Host header, a target that is not origin-form, a Transfer-Encoding whose last coding
  is not chunked, and a head over ``MAX_HEAD_BYTES`` are refused.
"""

from __future__ import annotations

import functools
import socket
from typing import NamedTuple

import httptools

from rosetta.accounts.tokens import TOKEN_PREFIX

MAX_HEAD_BYTES = 64 * 1024

_BEARER_PREFIX = b"bearer " + TOKEN_PREFIX.encode()
_BEARER_LENGTH = len(_BEARER_PREFIX)
_VERSIONS = {"1.1": b" HTTP/1.1\r\n", "1.0": b" HTTP/1.0\r\n"}

# Request headers read here; all others are forwarded as they are.
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
_KEEP_ALIVE_LINE = b"\r\n"
_CLOSE_LINE = b"Connection: close\r\n\r\n"
_UPGRADE_LINE = b"Connection: Upgrade\r\n\r\n"

# Head without NamedTuple's Python-level __new__ (every field given, in order): it runs per request.
_new_head = tuple.__new__


class Head(NamedTuple):
    """One request head's facts, and what to send upstream for it."""

    method: bytes
    target: bytes  # origin-form (or "*"), as sent
    host: bytes  # b"" when the client sent none
    origin: bytes | None
    upgrade: bool  # asks to switch protocols, and may (httptools says so)
    content_length: int | None
    chunked: bool
    accepts_html: bool  # a browser navigating, rather than a script
    access_cookies: tuple[bytes, ...]  # values of the platform's access cookies, taken out of ``parts``
    authorization: bytes  # the client's Authorization lines, but an API token of the platform's
    api_token: bytes | None  # a platform API token sent as Authorization: Bearer (its line: ``api_token_line``)
    api_token_line: bytes
    client: bytes  # the address the forwarding headers name
    # Request line, an empty slot for the credential ``policy.decide`` chooses, the headers to
    # forward, the forwarding headers, the Connection line and the empty line: joined, the head to send.
    parts: list[bytes]


class BadHead(NamedTuple):
    """A head the gateway refuses: answered with ``status`` and ``message``, the connection ends."""

    status: int
    reason: str
    title: str
    message: str


HEAD_TOO_LARGE = BadHead(431, "Request Header Fields Too Large", "Request too large", "The request head is too large.")
UNPARSABLE = BadHead(400, "Bad Request", "Bad request", "The gateway could not parse this request.")
TWO_HOSTS = BadHead(400, "Bad Request", "Bad request", "The request has more than one Host header.")
NOT_ORIGIN_FORM = BadHead(400, "Bad Request", "Bad request", "The gateway only accepts origin-form request targets.")
FRAMING_LISTED = BadHead(
    400, "Bad Request", "Bad request", "The Connection header may not name Content-Length or Transfer-Encoding."
)
UNKNOWN_CODING = BadHead(400, "Bad Request", "Bad request", "The gateway relays request bodies plain or chunked only.")


def scan(
    method: bytes,
    target: bytes,
    version: str,
    headers: list[tuple[bytes, bytes]],
    may_upgrade: bool,
    peer: bytes,
    cookie_prefix: bytes,
    proto: bytes,
    via_terminator: bool = False,
) -> Head | BadHead:
    """The facts of one head and the bytes to forward for it.

    ``may_upgrade``: httptools' ``should_upgrade()``. ``peer``: the address that connected
    (b"unix" for a unix socket). ``cookie_prefix``: ``<access cookie name>=``. ``proto``: the
    scheme the forwarding headers name. ``via_terminator``: the peer is a trusted TLS terminator,
    whose X-Forwarded-For names the client."""
    if target[:1] != b"/" and target != b"*":
        # Absolute-form and CONNECT targets could name another origin than the Host routed by.
        return NOT_ORIGIN_FORM
    # The request line; the credential's slot; then the other headers, as they came.
    parts = [b"", b""]
    size = len(target)
    host = origin = content_length = connection = api_token = named_client = None
    cookies = upgrade_at = None  # where in parts their values are
    authorization = api_token_line = b""
    accepts_html = chunked = False
    for name, value in headers:
        size += len(name) + len(value)
        kind = _HEADER_KINDS.get(name.lower())
        if kind is None:
            parts += (name, b": ", value, b"\r\n")
        elif kind is _HOST:
            if host is not None:
                return TWO_HOSTS
            host = value
            parts += (name, b": ", value, b"\r\n")
        elif kind is _COOKIE:
            if cookie_prefix in value:
                if cookies is None:
                    cookies = [len(parts) + 2]
                else:
                    cookies.append(len(parts) + 2)
            parts += (name, b": ", value, b"\r\n")
        elif kind is _AUTHORIZATION:
            if api_token is None and value[:_BEARER_LENGTH].lower() == _BEARER_PREFIX:
                api_token = value[7:].strip()
                api_token_line = name + b": " + value + b"\r\n"
            else:
                authorization += name + b": " + value + b"\r\n"
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
            chunked = value.rpartition(b",")[2].strip().lower() == b"chunked"
            if not chunked:
                return UNKNOWN_CODING
            parts += (name, b": ", value, b"\r\n")
        elif kind is _CONNECTION:
            connection = value if connection is None else connection + b"," + value
        elif kind is _UPGRADE:
            upgrade_at = len(parts)
            parts += (name, b": ", value, b"\r\n")
        elif via_terminator and name.lower() == b"x-forwarded-for":  # otherwise dropped: spoofable
            named_client = value
    if size + 4 * len(headers) > MAX_HEAD_BYTES:  # each line's ": " and CRLF too
        return HEAD_TOO_LARGE
    connection_line = _KEEP_ALIVE_LINE
    if connection is not None:
        options = {option.strip() for option in connection.lower().split(b",")}
        if not options <= _CONNECTION_OPTIONS:
            if options & _FRAMING:
                # The body is framed by them here: dropped on the way, the upstream would read the
                # body as a request of its own, one that never passed these checks (smuggling).
                return FRAMING_LISTED
            kept = _without_listed(options, headers)
            settings = {"cookie_prefix": cookie_prefix, "proto": proto, "via_terminator": via_terminator}
            return scan(method, target, version, kept, may_upgrade, peer, **settings)
        if b"close" in options:
            connection_line = _CLOSE_LINE
    upgrade = False
    if upgrade_at is not None:
        upgrade = may_upgrade
        if upgrade:
            connection_line = _UPGRADE_LINE
        else:
            parts[upgrade_at : upgrade_at + 4] = (b"", b"", b"", b"")  # hop-by-hop unless switching protocols
    access_cookies = ()
    if cookies is not None:
        at = cookies[0]
        if len(cookies) == 1 and b";" not in parts[at] and parts[at].startswith(cookie_prefix):
            # The Cookie header holds the access cookie alone, as on every request of a task's
            # own pages without cookies of their own: it goes, without the general case's split.
            access_cookies = (parts[at][len(cookie_prefix) :].strip(),)
            parts[at - 2 : at + 2] = (b"", b"", b"", b"")
        else:
            access_cookies = _take_access_cookies(parts, cookies, cookie_prefix)
    host = host or b""
    client = _named(named_client, peer) if via_terminator else peer
    parts[0] = method + b" " + target + _VERSIONS.get(version, b" HTTP/1.1\r\n")
    parts += (forwarding_headers(client, host, proto), connection_line)
    return _new_head(
        Head,
        (
            method,
            target,
            host,
            origin,
            upgrade,
            content_length,
            chunked,
            accepts_html,
            access_cookies,
            authorization,
            api_token,
            api_token_line,
            client,
            parts,
        ),
    )


_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


def _without_listed(options: set[bytes], headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The rare head whose Connection header names more hop-by-hop headers (never Host, which
    routes the request): its headers without them, to be scanned again."""
    listed = options - _CONNECTION_OPTIONS - {b"host"}
    kept = [(name, value) for name, value in headers if name.lower() not in listed | {b"connection"}]
    if options & _CONNECTION_OPTIONS:
        kept.append((b"Connection", b", ".join(sorted(options & _CONNECTION_OPTIONS))))
    return kept


def _take_access_cookies(parts: list[bytes], at: list[int], prefix: bytes) -> tuple[bytes, ...]:
    """Remove the access cookies from the Cookie headers at ``at``; their values. Several can
    arrive when a sibling origin tosses a cookie of the same name."""
    values = []
    for index in at:
        others = []
        for pair in parts[index].split(b";"):
            pair = pair.strip()
            if pair.startswith(prefix):
                values.append(pair[len(prefix) :])
            elif pair:
                others.append(pair)
        if others:
            parts[index] = b"; ".join(others)
        else:
            parts[index - 2 : index + 2] = (b"", b"", b"", b"")
    return tuple(values)


def _named(forwarded_for: bytes | None, peer: bytes) -> bytes:
    """The client a trusted terminator names: the last address of its X-Forwarded-For; its own
    address when it names none, or no valid one."""
    if forwarded_for is None:
        return peer
    named = forwarded_for.rpartition(b",")[2].strip()
    try:
        socket.inet_pton(socket.AF_INET6 if b":" in named else socket.AF_INET, named.decode("ascii"))
    except (OSError, UnicodeDecodeError, ValueError):
        return peer
    return named


@functools.lru_cache(maxsize=4096)
def forwarding_headers(client: bytes, host: bytes, proto: bytes) -> bytes:
    """The forwarding headers the gateway sets (X-Forwarded-*, X-Real-IP, Forwarded). Cached:
    a keep-alive connection asks the same each request, and any Host a client likes stays bounded."""
    quoted_host = b'"' + host.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    node = client
    if b":" in node:
        node = b'"[' + node + b']"'
    elif node == b"unix":
        node = b"unknown"
    return b"".join(
        (
            b"X-Forwarded-For: " + client,
            b"\r\nX-Forwarded-Proto: " + proto,
            b"\r\nX-Forwarded-Host: " + host,
            b"\r\nX-Real-IP: " + client,
            b"\r\nForwarded: for=" + node + b";proto=" + proto + b";host=" + quoted_host + b"\r\n",
        )
    )


class _Reader:
    """httptools callbacks scanning one head as the relay does, for ``scan_bytes``."""

    def __init__(self, peer: bytes, settings: dict) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.peer = peer
        self.settings = settings
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.scanned: Head | BadHead | None = None

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        method, version, upgrade = parser.get_method(), parser.get_http_version(), parser.should_upgrade()
        self.scanned = scan(method, self.target, version, self.headers, upgrade, self.peer, **self.settings)


def scan_bytes(data: bytes, peer: bytes = b"192.0.2.1", **settings) -> Head | BadHead:
    """``scan`` of the first request head in ``data``, parsed by httptools as the relay parses
    it: a parse error after a head that was scanned fine (in its body, say) refuses it too,
    as it ends the connection; a head still incomplete past ``MAX_HEAD_BYTES`` is too large."""
    reader = _Reader(peer, settings)
    try:
        reader.parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        return reader.scanned if type(reader.scanned) is BadHead else UNPARSABLE
    if reader.scanned is None:
        return HEAD_TOO_LARGE if len(data) > MAX_HEAD_BYTES else UNPARSABLE
    return reader.scanned
