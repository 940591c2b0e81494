"""A TLS terminator in front of the gateway (ROSETTA_TRUSTED_PROXIES): the client it names
reaches the task and the platform as the client, its connections are not capped as one client's,
and nobody else can name a client. Real sockets on loopback; 127.0.0.2 is the terminator."""

import asyncio
import json

import pytest

from rosetta.accounts.tokens import hash_token, new_token
from rosetta.gateway.routes import Route, RouteTable
from tests.integration.gateway_support import (
    OWNER,
    EchoUpstream,
    event_loop_policy,  # noqa: F401 -- a fixture: every test runs on asyncio's loop and on uvloop
    header,
    open_raw,
    running_gateway,
)

pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning')

TOKEN = new_token()
TERMINATOR = "127.0.0.2"


@pytest.fixture
async def echo_upstream():
    server = await asyncio.get_running_loop().create_server(lambda: EchoUpstream("task"), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2]
    server.close()


def table_for(upstream) -> RouteTable:
    route = Route("t1", "One", OWNER, "running", upstream)
    return RouteTable(routes={"t1": route}, token_users={hash_token(TOKEN): OWNER}, epochs={OWNER: 0})


def request(forwarded_for: str | None = None) -> bytes:
    forwarded = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for is not None else ""
    return f"GET / HTTP/1.1\r\nHost: t1.localhost\r\nAuthorization: Bearer {TOKEN}\r\n{forwarded}\r\n".encode()


async def echoed(reader, writer, forwarded_for: str | None = None) -> dict:
    """What the task received of one request on this connection."""
    writer.write(request(forwarded_for))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
    return json.loads(await asyncio.wait_for(reader.readexactly(length), 5))


def client_seen(echo: dict) -> tuple:
    return header(echo, "X-Forwarded-For"), header(echo, "X-Real-IP"), header(echo, "Forwarded")


async def test_the_client_a_trusted_terminator_names_is_who_the_task_sees(echo_upstream, tmp_path):
    async with running_gateway(
        table_for(echo_upstream), str(tmp_path / "none.sock"), trusted_proxies=(TERMINATOR,)
    ) as gateway:
        reader, writer = await open_raw(gateway, TERMINATOR)
        # One kept-alive connection carries one client's request, then another's (nginx reuses it).
        first = await echoed(reader, writer, "203.0.113.7")
        assert client_seen(first) == (
            ["203.0.113.7"],
            ["203.0.113.7"],
            ['for=203.0.113.7;proto=http;host="t1.localhost"'],
        )
        second = await echoed(reader, writer, "2001:db8::5")
        assert header(second, "X-Forwarded-For") == ["2001:db8::5"]
        assert header(second, "Forwarded") == ['for="[2001:db8::5]";proto=http;host="t1.localhost"']
        # A list: the last address is the one the terminator saw; nothing named, or nonsense: the terminator itself.
        assert header(await echoed(reader, writer, "198.51.100.1, 203.0.113.9"), "X-Forwarded-For") == ["203.0.113.9"]
        assert header(await echoed(reader, writer), "X-Forwarded-For") == [TERMINATOR]
        assert header(await echoed(reader, writer, "not-an-address"), "X-Forwarded-For") == [TERMINATOR]
        writer.close()

        # Anyone else's X-Forwarded-For is replaced, as ever.
        reader, writer = await open_raw(gateway, "127.0.0.3")
        assert client_seen(await echoed(reader, writer, "203.0.113.7"))[0] == ["127.0.0.3"]
        writer.close()


async def test_a_terminators_connections_are_not_capped_as_one_clients(echo_upstream, tmp_path):
    limits = {"max_connections_per_client": 2, "max_connections": 6, "trusted_proxies": (TERMINATOR,)}
    async with running_gateway(table_for(echo_upstream), str(tmp_path / "none.sock"), **limits) as gateway:
        carried = [await open_raw(gateway, TERMINATOR) for _ in range(5)]  # five clients' requests at once
        for number, (reader, writer) in enumerate(carried):
            assert header(await echoed(reader, writer, f"203.0.113.{number}"), "X-Forwarded-For") == [
                f"203.0.113.{number}"
            ]
        # The gateway-wide limit still holds: the sixth is served, the seventh refused.
        sixth = await open_raw(gateway, TERMINATOR)
        assert (await echoed(*sixth, "203.0.113.6"))["server"] == "task"
        refused_reader, refused_writer = await open_raw(gateway, TERMINATOR)
        assert await asyncio.wait_for(refused_reader.read(), 2) == b""
        for _, writer in [*carried, sixth, (None, refused_writer)]:
            writer.close()
