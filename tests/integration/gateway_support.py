"""What the gateway's integration tests share: real upstream servers and raw HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httptools
import pytest
import uvloop

from rosetta.gateway.access import AccessVerifier, access_key
from rosetta.gateway.proxy import Gateway, GatewayConfig
from rosetta.gateway.routes import RouteTable

KEY = access_key("integration-test-secret")
OWNER, STRANGER, STAFF = 1, 2, 3
BIG_BODY = hashlib.sha256(b"seed").digest() * (5 * 1024 * 1024 // 32)
PUBLIC_PORT = 8000
PUBLIC_URL = f"http://localhost:{PUBLIC_PORT}"


class EchoUpstream(asyncio.Protocol):
    """Answers every request with what it received, as JSON (no body to HEAD); ``/big``
    sends 5 MB. Each request is also noted in ``received``."""

    def __init__(self, server_name: str, received: list | None = None) -> None:
        self.server_name = server_name
        self.received = received if received is not None else []

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # it answers upgrade requests like any other: no 101

    def on_message_begin(self):
        self.url, self.headers, self.body = b"", [], b""

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append([name.decode(), value.decode()])

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        method = self.parser.get_method().decode()
        self.received.append((method, self.url.decode()))
        if self.url == b"/big":
            body = BIG_BODY
        else:
            body = json.dumps(
                {
                    "server": self.server_name,
                    "connection": id(self),
                    "method": method,
                    "url": self.url.decode(),
                    "headers": self.headers,
                    "body": self.body.decode("latin-1"),
                }
            ).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        self.transport.write(head if method == "HEAD" else head + body)


def header(echo: dict, name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def task(task_id: str, **headers: str) -> dict:
    return {"Host": f"{task_id}.localhost:{PUBLIC_PORT}", **headers}


def access_cookie(task_id: str = "t1", user_id: int = OWNER, epoch: int = 0) -> str:
    return AccessVerifier(KEY).make_cookie(user_id, task_id, epoch=epoch)


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request):
    """Run every test on both loops: production uses uvloop, whose transports differ in detail."""
    return uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()


@contextlib.asynccontextmanager
async def running_gateway(table: RouteTable, platform_upstream: str | tuple, **config) -> AsyncIterator[Gateway]:
    """A gateway on a free loopback port, answering from ``table``."""
    settings = {"listen": [("127.0.0.1", 0)], "tasks_domain": "localhost", "public_url": PUBLIC_URL, "key": KEY}
    gateway = Gateway(GatewayConfig(platform_upstream=platform_upstream, **{**settings, **config}), table)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.close()


async def open_raw(gateway: Gateway, source: str = "127.0.0.1"):
    """A plain TCP connection to the gateway from ``source`` (any 127.0.0.0/8 address)."""
    return await asyncio.open_connection("127.0.0.1", gateway.addresses[0][1], local_addr=(source, 0))


async def raw_exchange(gateway: Gateway, request: bytes) -> bytes:
    reader, writer = await open_raw(gateway)
    writer.write(request)
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return response


class Response:
    """One response read from raw bytes (``parse_responses``)."""

    def __init__(self, answers_head: bool) -> None:
        self.answers_head = answers_head
        self.ended = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    def on_header(self, name, value):
        self.headers[name.decode().lower()] = value.decode("latin-1")

    def on_headers_complete(self):
        self.ended = self.answers_head

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        self.ended = True

    def json(self) -> dict:
        return json.loads(self.body)


def parse_responses(data: bytes, head_requests: tuple[int, ...] = ()) -> list[Response]:
    """The responses in ``data``, in order; the ones numbered in ``head_requests`` answer HEAD."""
    responses = []
    while data:
        response = Response(answers_head=len(responses) in head_requests)
        parser = httptools.HttpResponseParser(response)
        consumed = 0
        while not response.ended and consumed < len(data):  # byte by byte: where each one ends matters
            parser.feed_data(data[consumed : consumed + 1])
            consumed += 1
        response.status = parser.get_status_code()
        responses.append(response)
        data = data[consumed:]
    return responses


def children_of(pid: int) -> dict[int, str]:
    """The live child processes of ``pid``: their command lines, by process id."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
                if int(parent) == pid and state != "Z":
                    children[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return children
