"""The front door under abuse: connection limits, silent connections, one client's share of
the gateway, and sockets of clients that left. Real sockets on loopback only; the clients use
source addresses 127.0.0.x to be told apart, as different hosts would be."""

import asyncio
import subprocess

import pytest

from rosetta.accounts.tokens import hash_token, new_token
from rosetta.gateway.proxy import Gateway, GatewayConfig, listening_sockets
from rosetta.gateway.routes import Route, RouteTable
from tests.integration.gateway_support import (
    KEY,
    OWNER,
    PUBLIC_URL,
    event_loop_policy,  # noqa: F401 -- a fixture: every test runs on asyncio's loop and on uvloop
    open_raw,
    running_gateway,
)
from tests.netns import connected_from, ipv6_host

pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning')

TOKEN = new_token()


def request(path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t1.localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()


class HeldUpstream(asyncio.Protocol):
    """Answers each request only when the test says so; keeps its side open after the
    client's EOF (as servers may: TCP allows it)."""

    def __init__(self, arrived: asyncio.Queue) -> None:
        self.arrived = arrived

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.arrived.put_nowait((head.split(b" ")[1].decode(), self.answer))

    def answer(self) -> None:
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def eof_received(self):
        return True


@pytest.fixture
async def held_upstream():
    """(address, queue of (path, answer) per request that arrived)."""
    arrived = asyncio.Queue()
    server = await asyncio.get_running_loop().create_server(lambda: HeldUpstream(arrived), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2], arrived
    server.close()


def table_for(upstream) -> RouteTable:
    route = Route("t1", "One", OWNER, "running", upstream)
    return RouteTable(routes={"t1": route}, token_users={hash_token(TOKEN): OWNER}, epochs={OWNER: 0})


async def closed_at_once(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 1) == b""
    except ConnectionResetError:
        return True


async def answered(reader, writer, held, path: str) -> bytes:
    writer.write(request(path))
    arrived, answer = await asyncio.wait_for(held.get(), 2)
    assert arrived == path
    answer()
    return await asyncio.wait_for(reader.readexactly(len(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")), 2)


async def test_one_address_cannot_take_every_connection(held_upstream, tmp_path):
    upstream, held = held_upstream
    limits = {"max_connections_per_client": 5, "max_connections": 7}
    async with running_gateway(table_for(upstream), str(tmp_path / "none.sock"), **limits) as gateway:
        hoarded = [await open_raw(gateway, "127.0.0.2") for _ in range(5)]
        reader, writer = await open_raw(gateway, "127.0.0.2")
        assert await closed_at_once(reader)  # over the address's limit
        writer.close()
        # Another client is still served, on a connection of its own.
        other_reader, other_writer = await open_raw(gateway, "127.0.0.3")
        assert (await answered(other_reader, other_writer, held, "/other")).endswith(b"ok")
        # Once one of the hoarded connections goes, the address may open one again.
        hoarded.pop()[1].close()
        await asyncio.sleep(0.1)
        again_reader, again_writer = await open_raw(gateway, "127.0.0.2")
        assert (await answered(again_reader, again_writer, held, "/again")).endswith(b"ok")
        # The gateway-wide limit: 7 connections with this one (4 hoarded, other, again); the next is refused.
        spare = await open_raw(gateway, "127.0.0.4")
        refused_reader, refused_writer = await open_raw(gateway, "127.0.0.5")
        assert await closed_at_once(refused_reader)
        for _, each in [*hoarded, (None, other_writer), (None, again_writer), spare, (None, refused_writer)]:
            each.close()


async def test_a_connection_that_sends_nothing_is_closed_quickly(held_upstream, tmp_path):
    upstream, _ = held_upstream
    timeouts = {"first_byte_timeout": 0.4, "head_timeout": 30.0, "idle_timeout": 120.0}
    async with running_gateway(table_for(upstream), str(tmp_path / "none.sock"), **timeouts) as gateway:
        reader, writer = await open_raw(gateway)
        began = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert asyncio.get_running_loop().time() - began < 1.5
        writer.close()


async def test_a_client_with_many_busy_connections_does_not_hold_up_another(held_upstream, tmp_path):
    """Its requests beyond its share wait their turn; another client's go straight through."""
    upstream, held = held_upstream
    async with running_gateway(table_for(upstream), str(tmp_path / "none.sock"), max_in_flight_per_client=3) as gateway:
        busy = [await open_raw(gateway, "127.0.0.2") for _ in range(6)]
        for number, (_, writer) in enumerate(busy):
            writer.write(request(f"/busy{number}"))
        first_three = [await asyncio.wait_for(held.get(), 2) for _ in range(3)]
        assert sorted(path for path, _ in first_three) == ["/busy0", "/busy1", "/busy2"]
        # The other client's request is forwarded at once, ahead of the busy client's waiting ones.
        reader, writer = await open_raw(gateway, "127.0.0.3")
        writer.write(request("/other"))
        path, answer = await asyncio.wait_for(held.get(), 2)
        assert path == "/other"
        answer()
        assert (await asyncio.wait_for(reader.readexactly(40), 2)).endswith(b"ok")
        # The busy client's waiting requests go on as its earlier ones are answered.
        for _, answer in first_three:
            answer()
        rest = [await asyncio.wait_for(held.get(), 2) for _ in range(3)]
        assert sorted(path for path, _ in rest) == ["/busy3", "/busy4", "/busy5"]
        for _, answer in rest:
            answer()
        for number, (busy_reader, busy_writer) in enumerate(busy):
            assert (await asyncio.wait_for(busy_reader.readexactly(40), 2)).endswith(b"ok"), number
            busy_writer.close()
        writer.close()


def close_wait_sockets(port: int) -> int:
    listing = subprocess.run(
        ["ss", "-tanH", "state", "close-wait", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    )
    return len(listing.stdout.splitlines())


async def test_sockets_of_clients_that_left_are_released_promptly(held_upstream, tmp_path):
    """Clients send a request, half-close or close once they have their answer, and go; the
    upstream never closes its side. Their sockets must not stay in CLOSE-WAIT."""
    upstream, held = held_upstream

    async def client(number: int) -> None:
        reader, writer = await open_raw(gateway)
        writer.write(request(f"/{number}"))
        if number % 2:
            writer.write_eof()  # half-closes before its answer arrives: it still gets it
        assert (await asyncio.wait_for(reader.readexactly(40), 5)).endswith(b"ok")
        writer.close()

    async def answer_all() -> None:
        while True:
            _, answer = await held.get()
            answer()

    async with running_gateway(table_for(upstream), str(tmp_path / "none.sock")) as gateway:
        answering = asyncio.create_task(answer_all())
        await asyncio.gather(*(client(number) for number in range(100)))
        await asyncio.sleep(2.5)
        port = gateway.addresses[0][1]
        assert close_wait_sockets(port) == 0
        answering.cancel()


async def test_a_client_pipelining_by_the_thousand_is_cut_off(held_upstream, tmp_path):
    """Requests queued behind an unanswered one cost memory: past a few hundred, the connection goes."""
    upstream, held = held_upstream
    async with running_gateway(table_for(upstream), str(tmp_path / "none.sock")) as gateway:
        reader, writer = await open_raw(gateway)
        writer.write(request() * 2000)
        assert await closed_at_once(reader)
        writer.close()
        assert len(gateway.connections) == 0


async def test_an_ipv6_client_counts_by_its_64_not_by_each_address(held_upstream, tmp_path):
    """On one machine's two /64s (a namespace of its own; the gateway listens there too)."""
    upstream, held = held_upstream
    lan, other_lan = "fd52:6f73:6574:7461", "fd52:6f73:6574:7462"
    with ipv6_host(f"{lan}::1/64", f"{lan}::2/64", f"{lan}:1:2:3:4/64", f"{other_lan}::1/64") as inside:
        sockets = inside(listening_sockets, [(f"{lan}::1", 0)])[0]
        port = sockets[0].getsockname()[1]
        config = GatewayConfig(listen=[], tasks_domain="localhost", public_url=PUBLIC_URL, key=KEY,
                               platform_upstream=str(tmp_path / "none.sock"), max_connections_per_client=2)  # fmt: skip
        gateway = Gateway(config, table_for(upstream))
        await gateway.start(sockets)
        try:

            async def connect(source: str):
                return await asyncio.open_connection(sock=inside(connected_from, source, f"{lan}::1", port))

            hoarded = [await connect(f"{lan}::2"), await connect(f"{lan}::1")]
            reader, writer = await connect(f"{lan}:1:2:3:4")  # the same /64: the same client
            assert await closed_at_once(reader)
            writer.close()
            other_reader, other_writer = await connect(f"{other_lan}::1")  # another /64: another client
            assert (await answered(other_reader, other_writer, held, "/other")).endswith(b"ok")
            # The connections it holds are served as ever.
            assert (await answered(*hoarded[0], held, "/mine")).endswith(b"ok")
            for _, each in [*hoarded, (None, other_writer)]:
                each.close()
        finally:
            await gateway.close()
