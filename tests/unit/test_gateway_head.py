"""The gateway's head scanner, table-tested: the bytes of a request head in (parsed by httptools
as the relay parses them), the request's facts and the head forwarded upstream out. No sockets."""

import pytest

from rosetta.gateway.head import (
    FRAMING_LISTED,
    HEAD_TOO_LARGE,
    MAX_HEAD_BYTES,
    NOT_ORIGIN_FORM,
    TWO_HOSTS,
    UNKNOWN_CODING,
    UNPARSABLE,
    BadHead,
    Head,
    forwarding_headers,
    scan_bytes,
)

PREFIX = b"rosetta-task-access="
PEER = b"192.0.2.7"
TERMINATOR = b"10.0.0.1"


def read(head: bytes, peer: bytes = PEER, via_terminator: bool = False) -> Head | BadHead:
    return scan_bytes(head, peer, cookie_prefix=PREFIX, proto=b"http", via_terminator=via_terminator)


def forwarded(head: Head, credential: bytes = b"") -> bytes:
    """The head the gateway sends upstream, with ``credential`` in the credential's slot."""
    parts = list(head.parts)
    parts[1] = credential
    return b"".join(parts)


def header_lines(head: Head) -> list[bytes]:
    """The client's header lines forwarded: after the request line, before the gateway's own
    (its forwarding headers, then its Connection line)."""
    lines = forwarded(head).split(b"\r\n")[1:]
    return lines[: lines.index(b"X-Forwarded-For: " + head.client)]


def request(*headers: str, line: str = "GET / HTTP/1.1", body: bytes = b"") -> bytes:
    return "\r\n".join((line, "Host: t1.localhost:8000", *headers, "", "")).encode() + body


def post(*headers: str) -> bytes:
    return request(*headers, line="POST / HTTP/1.1")


# -- smuggling attempts and malformed heads: refused, never forwarded -------------------------------


@pytest.mark.parametrize(
    ("raw", "refusal"),
    [
        pytest.param(post("Content-Length: 3", "Content-Length: 3"), UNPARSABLE, id="cl-twice"),
        pytest.param(post("Content-Length: 3", "Content-Length: 4"), UNPARSABLE, id="cl-differ"),
        pytest.param(post("Content-Length: 3, 3"), UNPARSABLE, id="cl-list"),
        pytest.param(post("Content-Length: -1"), UNPARSABLE, id="cl-negative"),
        pytest.param(post("Content-Length: +3"), UNPARSABLE, id="cl-signed"),
        pytest.param(post("Content-Length: 3", "Transfer-Encoding: chunked"), UNPARSABLE, id="cl-te"),
        pytest.param(post("Transfer-Encoding: chunked", "Content-Length: 3"), UNPARSABLE, id="te-cl"),
        pytest.param(post("Transfer-Encoding: chunked", "Transfer-Encoding: identity"), UNPARSABLE, id="te-twice"),
        pytest.param(post("Transfer-Encoding: chunked, gzip"), UNPARSABLE, id="te-chunked-not-last"),
        pytest.param(post("Transfer-Encoding: gzip"), UNKNOWN_CODING, id="te-gzip"),
        pytest.param(post("Transfer-Encoding: xchunked"), UNKNOWN_CODING, id="te-xchunked"),
        pytest.param(post("Transfer-Encoding : chunked"), UNPARSABLE, id="space-before-colon"),
        pytest.param(request("X-Note: one", " two"), UNPARSABLE, id="obs-fold"),
        pytest.param(request("X-Note: one", "\ttwo"), UNPARSABLE, id="obs-fold-tab"),
        pytest.param(b"GET / HTTP/1.1\nHost: t1.localhost\n\n", UNPARSABLE, id="bare-lf"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: t1.localhost\nX-Note: a\r\n\r\n", UNPARSABLE, id="bare-lf-in-headers"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: t1.localhost\r\nX-Note: a\rb\r\n\r\n", UNPARSABLE, id="bare-cr"),
        pytest.param(request("X Note: a"), UNPARSABLE, id="space-in-name"),
        pytest.param(request("X-Note: a\x00b"), UNPARSABLE, id="nul-in-value"),
        # Connection naming what frames the body: dropped on the way, the body would be a request.
        pytest.param(post("Content-Length: 3", "Connection: Content-Length"), FRAMING_LISTED, id="cl-listed"),
        pytest.param(post("Transfer-Encoding: chunked", "Connection: keep-alive, transfer-encoding"), FRAMING_LISTED,
                     id="te-listed"),
        pytest.param(request("Host: t2.localhost:8000"), TWO_HOSTS, id="two-hosts"),
        pytest.param(request(line="GET http://t2.localhost:8000/ HTTP/1.1"), NOT_ORIGIN_FORM, id="absolute-form"),
        pytest.param(request(line="CONNECT t2.localhost:22 HTTP/1.1"), NOT_ORIGIN_FORM, id="connect"),
        pytest.param(request(*(f"X-Filler-{n}: {'x' * 1000}" for n in range(70))), HEAD_TOO_LARGE, id="many-headers"),
        pytest.param(request("X-Filler: " + "x" * (MAX_HEAD_BYTES + 10)), HEAD_TOO_LARGE, id="one-long-header"),
        pytest.param(b"GET / HTTP/1.1\r\nX-Filler: " + b"x" * (MAX_HEAD_BYTES + 10), HEAD_TOO_LARGE, id="never-ending"),
    ],
)  # fmt: skip
def test_refused_heads(raw, refusal):
    assert read(raw) == refusal


# -- what is forwarded ----------------------------------------------------------------------------


def test_a_plain_request_is_forwarded_as_it_came_with_the_gateways_forwarding_headers():
    head = read(request("Accept: text/html", "X-Note: kept"))
    assert (head.method, head.target, head.host) == (b"GET", b"/", b"t1.localhost:8000")
    assert not head.upgrade and not head.chunked
    assert head.accepts_html and head.client == PEER and head.access_cookies == () and head.api_token is None
    assert forwarded(head) == (
        b"GET / HTTP/1.1\r\n"
        b"Host: t1.localhost:8000\r\nAccept: text/html\r\nX-Note: kept\r\n"
        b"X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: t1.localhost:8000\r\n"
        b'X-Real-IP: 192.0.2.7\r\nForwarded: for=192.0.2.7;proto=http;host="t1.localhost:8000"\r\n\r\n'
    )  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        # Hop-by-hop headers are the gateway's own to set; the client's go no further.
        (("Keep-Alive: timeout=5", "TE: trailers", "Trailer: X-Sum", "Proxy-Connection: keep-alive"), []),
        (("Connection: keep-alive",), []),
        # Connection names more hop-by-hop headers: they are dropped too, whatever their case.
        (("Connection: X-Secret, keep-alive", "X-Secret: 1", "X-Other: 2"), [b"X-Other: 2"]),
        (("Connection: x-secret", "Connection: X-Two", "X-SECRET: 1", "x-two: 2"), []),
        # ... but never Host, which routes the request.
        (("Connection: Host, X-A", "X-A: 1"), []),
        # An Upgrade that is not asked for by Connection is not a switch: dropped.
        (("Upgrade: websocket",), []),
        # Spoofed forwarding headers: the gateway sets its own.
        (("X-Forwarded-For: 203.0.113.9", "X-Real-IP: 203.0.113.9", "Forwarded: for=203.0.113.9"), []),
        (("X-Forwarded-Host: evil", "X-Forwarded-Proto: https"), []),
        # Everything else goes on as it came.
        (("x-lower: a", "X-Empty: ", "Accept: */*"), [b"x-lower: a", b"X-Empty: ", b"Accept: */*"]),
    ],
)  # fmt: skip
def test_forwarded_headers(headers, kept):
    head = read(request(*headers))
    assert header_lines(head) == [b"Host: t1.localhost:8000", *kept]
    assert forwarded(head).endswith(b"\r\n\r\n") and b"\r\nConnection:" not in forwarded(head)


def test_connection_close_and_upgrade_are_said_by_the_gateway():
    closing = read(request("Connection: close"))
    assert forwarded(closing).endswith(b"\r\nConnection: close\r\n\r\n") and not closing.upgrade
    upgrade = read(request("Connection: keep-alive, Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13"))
    assert upgrade.upgrade
    assert header_lines(upgrade) == [b"Host: t1.localhost:8000", b"Upgrade: websocket", b"Sec-WebSocket-Version: 13"]
    assert forwarded(upgrade).endswith(b"\r\nConnection: Upgrade\r\n\r\n")
    listed = read(request("Connection: close, X-Secret", "X-Secret: 1"))
    assert header_lines(listed) == [b"Host: t1.localhost:8000"]
    assert forwarded(listed).endswith(b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(
    ("cookies", "kept", "access"),
    [
        (("Cookie: rosetta-task-access=abc",), [], (b"abc",)),
        (("Cookie: a=1; rosetta-task-access=abc; b=2",), [b"Cookie: a=1; b=2"], (b"abc",)),
        # A sibling origin may toss a cookie of the same name: both are read, neither forwarded.
        (("Cookie: rosetta-task-access=mine;rosetta-task-access=tossed",), [], (b"mine", b"tossed")),
        (("Cookie: a=1", "Cookie: rosetta-task-access=abc"), [b"Cookie: a=1"], (b"abc",)),
        # The name inside another cookie's value is not the access cookie.
        (("Cookie: note=rosetta-task-access=abc",), [b"Cookie: note=rosetta-task-access=abc"], ()),
        (("Cookie: a=1",), [b"Cookie: a=1"], ()),
    ],
)
def test_access_cookies_are_read_and_never_forwarded(cookies, kept, access):
    head = read(request(*cookies))
    assert head.access_cookies == access
    assert header_lines(head) == [b"Host: t1.localhost:8000", *kept]


@pytest.mark.parametrize(
    ("headers", "authorization", "token"),
    [
        (("Authorization: Basic dTpw",), b"Authorization: Basic dTpw\r\n", None),
        (("Authorization: Bearer rst_abc",), b"", b"rst_abc"),
        (("authorization: bearer RST_abc ",), b"", b"RST_abc"),
        (("Authorization: Bearer task-own-token",), b"Authorization: Bearer task-own-token\r\n", None),
        # One API token is read; a second goes with the client's own credentials.
        (("Authorization: Bearer rst_a", "Authorization: Bearer rst_b"), b"Authorization: Bearer rst_b\r\n", b"rst_a"),
    ],
)
def test_authorization_is_set_aside_for_the_policy(headers, authorization, token):
    head = read(request(*headers))
    assert (head.authorization, head.api_token) == (authorization, token)
    assert header_lines(head) == [b"Host: t1.localhost:8000"]  # none forwarded until the policy says which
    assert head.api_token_line == (headers[0].encode() + b"\r\n" if token else b"")


@pytest.mark.parametrize(
    ("raw", "facts"),
    [
        (request("Content-Length: 5", line="POST /x?y=1 HTTP/1.1", body=b"hello"), (b"POST", b"/x?y=1", 5, False)),
        (request("Transfer-Encoding: chunked", line="PUT / HTTP/1.1"), (b"PUT", b"/", None, True)),
        (request("Transfer-Encoding: gzip, chunked", line="PUT / HTTP/1.1"), (b"PUT", b"/", None, True)),
        (request(line="OPTIONS * HTTP/1.1"), (b"OPTIONS", b"*", None, False)),
    ],
)
def test_request_facts(raw, facts):
    head = read(raw)
    assert (head.method, head.target, head.content_length, head.chunked) == facts


def test_http_1_0_stays_http_1_0_and_a_missing_host_is_empty():
    head = read(b"GET /old HTTP/1.0\r\n\r\n")
    assert head.host == b"" and forwarded(head).startswith(b"GET /old HTTP/1.0\r\n")


@pytest.mark.parametrize(
    ("peer", "via_terminator", "xff", "client"),
    [
        (PEER, False, "203.0.113.9", PEER),  # a client's own claim is not believed
        (TERMINATOR, True, "203.0.113.9", b"203.0.113.9"),
        (TERMINATOR, True, "198.51.100.1, 203.0.113.9", b"203.0.113.9"),  # the address the terminator added: last
        (TERMINATOR, True, "2001:db8::5", b"2001:db8::5"),
        (TERMINATOR, True, "not-an-address", TERMINATOR),
        (TERMINATOR, True, None, TERMINATOR),
    ],
)
def test_forwarded_for_names_the_client(peer, via_terminator, xff, client):
    headers = (f"X-Forwarded-For: {xff}",) if xff else ()
    head = read(request(*headers), peer=peer, via_terminator=via_terminator)
    assert head.client == client
    assert forwarding_headers(client, b"t1.localhost:8000", b"http") in forwarded(head)
    assert forwarded(head).count(b"X-Forwarded-For:") == 1


def test_forwarding_headers_quote_what_needs_it():
    six = forwarding_headers(b"2001:db8::5", b'odd"host', b"https")
    assert b'Forwarded: for="[2001:db8::5]";proto=https;host="odd\\"host"\r\n' in six
    assert b"Forwarded: for=unknown;" in forwarding_headers(b"unix", b"localhost", b"http")
