"""The gateway in front of real upstream servers, driven by real HTTP and WebSocket clients."""

import asyncio
import hashlib
import json
import socket
import urllib.parse

import httptools
import httpx
import pytest
import uvloop
import websockets.asyncio.client
import websockets.asyncio.server

from rosetta.accounts.tokens import hash_token, new_token
from rosetta.gateway.access import COOKIE_NAME, AccessVerifier, access_key, mint_access_token
from rosetta.gateway.proxy import Gateway, GatewayConfig
from rosetta.gateway.routes import Route, RouteTable

KEY = access_key("integration-test-secret")
OWNER, STRANGER, STAFF = 1, 2, 3
BIG_BODY = hashlib.sha256(b"seed").digest() * (5 * 1024 * 1024 // 32)
PUBLIC_URL = "http://localhost:8000"


class EchoUpstream(asyncio.Protocol):
    """Answers every request with what it received, as JSON; ``/big`` sends 5 MB."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name

    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_begin(self):
        self.url, self.headers, self.body = b"", [], b""

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append([name.decode(), value.decode()])

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        if self.url == b"/big":
            body = BIG_BODY
        else:
            body = json.dumps(
                {
                    "server": self.server_name,
                    "connection": id(self),
                    "method": self.parser.get_method().decode(),
                    "url": self.url.decode(),
                    "headers": self.headers,
                    "body": self.body.decode("latin-1"),
                }
            ).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        self.transport.write(head + body)


def header(echo: dict, name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key.lower() == name.lower()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The forward-compatible pytest_asyncio_loop_factories hook needs a conftest.py; until this
# suite has one for the gateway, the (deprecated) policy fixture parametrizes the loop.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning')


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request):
    """Run every test on both loops: production uses uvloop, whose transports differ in detail."""
    return uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()


@pytest.fixture
async def echo_server():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EchoUpstream("task"), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2]
    server.close()


@pytest.fixture
async def platform_socket(tmp_path):
    path = str(tmp_path / "platform.sock")
    server = await asyncio.get_running_loop().create_unix_server(lambda: EchoUpstream("platform"), path)
    yield path
    server.close()


@pytest.fixture
async def websocket_server():
    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async with websockets.asyncio.server.serve(echo, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[:2]


@pytest.fixture
def api_token():
    return new_token()


@pytest.fixture
async def gateway(echo_server, platform_socket, websocket_server, api_token):
    config = GatewayConfig(
        listen=[("127.0.0.1", 0)],
        tasks_domain="localhost",
        platform_upstream=platform_socket,
        public_url=PUBLIC_URL,
        key=KEY,
    )
    table = RouteTable(
        routes={
            "t1": Route("t1", "Notebook <one>", OWNER, "running", echo_server),
            "ws": Route("ws", "Sockets", OWNER, "running", websocket_server),
            "t3": Route("t3", "Waiting <b>", OWNER, "starting", None),
            "t4": Route("t4", "Crashed", OWNER, "failed", None),
            "t5": Route("t5", "Refusing", OWNER, "running", ("127.0.0.1", free_port())),
        },
        staff_ids=frozenset({STAFF}),
        token_users={hash_token(api_token): OWNER, hash_token("rst_stranger"): STRANGER},
    )
    gateway = Gateway(config, table)
    await gateway.start()
    yield gateway
    await gateway.close()


@pytest.fixture
async def client(gateway):
    port = gateway.addresses[0][1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", follow_redirects=False) as client:
        yield client


def task(task_id: str, **headers: str) -> dict:
    return {"Host": f"{task_id}.localhost:8000", **headers}


def access_cookie(task_id: str = "t1", user_id: int = OWNER) -> str:
    return AccessVerifier(KEY).make_cookie(user_id, task_id)


async def test_bearer_token_reaches_task_without_leaking_credentials(client, api_token):
    cookie_header = f"theme=dark; {COOKIE_NAME}={access_cookie()}; lang=en"
    response = await client.get(
        "/api?x=1", headers=task("t1", Authorization=f"Bearer {api_token}", Cookie=cookie_header)
    )
    assert response.status_code == 200
    echo = response.json()
    assert echo["server"] == "task"
    assert echo["url"] == "/api?x=1"
    assert header(echo, "Authorization") == []
    assert header(echo, "Cookie") == ["theme=dark; lang=en"]
    assert header(echo, "Host") == ["t1.localhost:8000"]
    assert header(echo, "X-Forwarded-For") == ["127.0.0.1"]
    assert header(echo, "X-Forwarded-Proto") == ["http"]
    assert header(echo, "X-Forwarded-Host") == ["t1.localhost:8000"]


async def test_cookie_alone_is_removed_from_the_forwarded_request(client):
    response = await client.get("/", headers=task("t1", Cookie=f"{COOKIE_NAME}={access_cookie()}"))
    assert response.status_code == 200
    assert header(response.json(), "Cookie") == []


async def test_spoofed_forwarding_headers_are_replaced(client, api_token):
    response = await client.get(
        "/", headers=task("t1", Authorization=f"Bearer {api_token}", **{"X-Forwarded-For": "6.6.6.6"})
    )
    assert header(response.json(), "X-Forwarded-For") == ["127.0.0.1"]


async def test_the_tasks_own_bearer_token_is_passed_through(client):
    response = await client.get(
        "/", headers=task("t1", Authorization="Bearer app-secret", Cookie=f"{COOKIE_NAME}={access_cookie()}")
    )
    assert response.status_code == 200
    assert header(response.json(), "Authorization") == ["Bearer app-secret"]


async def test_another_user_is_forbidden(client):
    response = await client.get("/", headers=task("t1", Authorization="Bearer rst_stranger"))
    assert response.status_code == 403
    assert "Notebook &lt;one&gt;" in response.text
    response = await client.get("/", headers=task("t1", Cookie=f"{COOKIE_NAME}={access_cookie(user_id=STRANGER)}"))
    assert response.status_code == 403


async def test_staff_may_open_any_task(client):
    response = await client.get("/", headers=task("t1", Cookie=f"{COOKIE_NAME}={access_cookie(user_id=STAFF)}"))
    assert response.status_code == 200


async def test_cookie_of_another_task_does_not_open_this_one(client):
    response = await client.get("/", headers=task("t1", Cookie=f"{COOKIE_NAME}={access_cookie('ws')}"))
    assert response.status_code == 401


async def test_unknown_task_is_not_found(client, api_token):
    response = await client.get("/", headers=task("nope", Authorization=f"Bearer {api_token}"))
    assert response.status_code == 404
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Length"] == str(len(response.content))


async def test_browser_without_credentials_is_sent_to_the_platform(client):
    response = await client.get("/lab/tree?path=a b", headers=task("t1", Accept="text/html,*/*"))
    assert response.status_code == 302
    location = urllib.parse.urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{PUBLIC_URL}/tasks/t1/open"
    assert urllib.parse.parse_qs(location.query)["next"] == ["/lab/tree?path=a%20b"]


async def test_api_client_without_credentials_is_unauthorized(client):
    response = await client.get("/", headers=task("t1", Accept="application/json"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_login_sets_a_host_only_cookie_once(client):
    token = mint_access_token(KEY, OWNER, "t1")
    form = {"token": token, "next": "/lab?reset"}
    response = await client.post("/.rosetta/login", data=form, headers=task("t1"))
    assert response.status_code == 303
    assert response.headers["Location"] == "/lab?reset"
    set_cookie = response.headers["Set-Cookie"]
    attributes = [part.strip().lower() for part in set_cookie.split(";")]
    assert set_cookie.startswith(f"{COOKIE_NAME}=")
    assert {"path=/", "httponly", "samesite=lax"} <= set(attributes)
    assert not any(attribute.startswith("domain") for attribute in attributes)
    assert "secure" not in attributes

    again = await client.post("/.rosetta/login", data=form, headers=task("t1"))
    assert again.status_code == 403
    assert "expired or was already used" in again.text
    assert f'href="{PUBLIC_URL}/tasks/t1"' in again.text

    cookie = set_cookie.split(";")[0]
    opened = await client.get("/lab", headers=task("t1", Cookie=cookie))
    assert opened.status_code == 200
    assert opened.json()["url"] == "/lab"


async def test_login_refuses_an_offsite_next(client):
    token = mint_access_token(KEY, OWNER, "t1")
    response = await client.post(
        "/.rosetta/login", data={"token": token, "next": "//evil.example/"}, headers=task("t1")
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


async def test_login_token_of_another_task_is_refused(client):
    token = mint_access_token(KEY, OWNER, "ws")
    response = await client.post("/.rosetta/login", data={"token": token, "next": "/"}, headers=task("t1"))
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers


async def test_task_without_upstream_shows_its_phase(client):
    response = await client.get("/", headers=task("t3", Cookie=f"{COOKIE_NAME}={access_cookie('t3')}"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert "Waiting &lt;b&gt;" in response.text
    assert "starting" in response.text
    assert '<meta http-equiv="refresh" content="2">' in response.text


async def test_final_task_says_so_and_links_back(client):
    response = await client.get("/", headers=task("t4", Cookie=f"{COOKIE_NAME}={access_cookie('t4')}"))
    assert response.status_code == 503
    assert "failed" in response.text and "final" in response.text
    assert f'href="{PUBLIC_URL}/tasks/t4"' in response.text
    assert "refresh" not in response.text


async def test_refused_upstream_connection_is_a_page_not_a_bare_502(client):
    response = await client.get("/", headers=task("t5", Cookie=f"{COOKIE_NAME}={access_cookie('t5')}"))
    assert response.status_code == 503
    assert "Refusing" in response.text and "running" in response.text


async def test_keep_alive_reuses_one_upstream_connection(client, api_token):
    connections = set()
    for number in range(5):
        response = await client.get(f"/{number}", headers=task("t1", Authorization=f"Bearer {api_token}"))
        assert response.status_code == 200
        assert response.json()["url"] == f"/{number}"
        connections.add(response.json()["connection"])
    assert len(connections) == 1


async def test_chunked_request_body_arrives_intact(client, api_token):
    parts = [b"first,", b"x" * 100_000, b",last"]

    async def body():
        for part in parts:
            yield part

    response = await client.post("/upload", content=body(), headers=task("t1", Authorization=f"Bearer {api_token}"))
    echo = response.json()
    assert header(echo, "Transfer-Encoding") == ["chunked"]
    assert echo["body"].encode("latin-1") == b"".join(parts)


async def test_content_length_body_arrives_intact(client, api_token):
    payload = bytes(range(256)) * 4000
    response = await client.put("/upload", content=payload, headers=task("t1", Authorization=f"Bearer {api_token}"))
    assert response.json()["body"].encode("latin-1") == payload


async def test_large_response_streams_intact(client, api_token):
    response = await client.get("/big", headers=task("t1", Authorization=f"Bearer {api_token}"))
    assert response.status_code == 200
    assert response.content == BIG_BODY


async def test_websocket_echo_through_the_gateway(gateway):
    port = gateway.addresses[0][1]
    async with websockets.asyncio.client.connect(
        f"ws://ws.localhost:{port}/socket",
        host="127.0.0.1",
        port=port,
        additional_headers={"Cookie": f"{COOKIE_NAME}={access_cookie('ws')}"},
    ) as connection:
        for message in ["hello", "x" * 200_000, b"\x00\x01binary"]:
            await connection.send(message)
            assert await connection.recv() == message


async def test_websocket_without_credentials_is_refused(gateway):
    port = gateway.addresses[0][1]
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.asyncio.client.connect(f"ws://ws.localhost:{port}/socket", host="127.0.0.1", port=port):
            pass
    assert refused.value.response.status_code == 401


async def test_other_hosts_go_to_the_platform_unauthenticated(client):
    response = await client.get("/accounts/login/", headers={"Host": "localhost:8000"})
    assert response.status_code == 200
    echo = response.json()
    assert echo["server"] == "platform"
    assert echo["url"] == "/accounts/login/"
    assert header(echo, "X-Forwarded-Host") == ["localhost:8000"]


async def test_switching_host_on_one_connection_switches_upstream(client, api_token):
    first = await client.get("/", headers=task("t1", Authorization=f"Bearer {api_token}"))
    second = await client.get("/", headers={"Host": "localhost:8000"})
    third = await client.get("/", headers=task("t1", Authorization=f"Bearer {api_token}"))
    assert [r.json()["server"] for r in (first, second, third)] == ["task", "platform", "task"]


async def test_routes_are_swapped_whole(gateway, client, api_token):
    gateway.set_table(RouteTable(token_users={hash_token(api_token): OWNER}))
    response = await client.get("/", headers=task("t1", Authorization=f"Bearer {api_token}"))
    assert response.status_code == 404


async def raw_exchange(gateway, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.addresses[0][1])
    writer.write(request)
    response = await reader.read()
    writer.close()
    return response


async def test_malformed_request_is_rejected(gateway):
    response = await raw_exchange(gateway, b"NOT HTTP AT ALL\x00\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 ")


async def test_oversized_head_is_rejected(gateway):
    request = b"GET / HTTP/1.1\r\nHost: t1.localhost\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    response = await raw_exchange(gateway, request)
    assert response.startswith(b"HTTP/1.1 431 ")


async def test_absolute_form_target_is_rejected(gateway):
    request = b"GET http://t2.localhost/ HTTP/1.1\r\nHost: t1.localhost\r\n\r\n"
    assert (await raw_exchange(gateway, request)).startswith(b"HTTP/1.1 400 ")


async def test_duplicate_host_is_rejected(gateway):
    request = b"GET / HTTP/1.1\r\nHost: t1.localhost\r\nHost: localhost\r\n\r\n"
    assert (await raw_exchange(gateway, request)).startswith(b"HTTP/1.1 400 ")


async def test_half_closed_client_still_gets_its_response(gateway, api_token):
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.addresses[0][1])
    writer.write(f"GET /half HTTP/1.1\r\nHost: t1.localhost\r\nAuthorization: Bearer {api_token}\r\n\r\n".encode())
    writer.write_eof()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b'"/half"' in response


@pytest.fixture
async def impatient_gateway(echo_server, platform_socket):
    config = GatewayConfig(
        listen=[("127.0.0.1", 0)],
        tasks_domain="localhost",
        platform_upstream=platform_socket,
        public_url=PUBLIC_URL,
        key=KEY,
        head_timeout=0.3,
        idle_timeout=0.6,
    )
    gateway = Gateway(config, RouteTable(routes={"t1": Route("t1", "One", OWNER, "running", echo_server)}))
    await gateway.start()
    yield gateway
    await gateway.close()


async def test_a_head_that_never_completes_is_cut_off(impatient_gateway):
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient_gateway.addresses[0][1])
    writer.write(b"GET / HTTP/1.1\r\nHost: t1.loc")  # ... and nothing more
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 408 ")


async def test_a_silent_connection_is_closed_without_a_word(impatient_gateway):
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient_gateway.addresses[0][1])
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(impatient_gateway):
    cookie = AccessVerifier(KEY).make_cookie(OWNER, "t1")
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient_gateway.addresses[0][1])
    writer.write(f"GET / HTTP/1.1\r\nHost: t1.localhost\r\nCookie: rosetta-task-access={cookie}\r\n\r\n".encode())
    started = asyncio.get_running_loop().time()
    response = await asyncio.wait_for(reader.read(), 5)  # the 200, then EOF once idle
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert asyncio.get_running_loop().time() - started >= 0.5


async def test_a_request_ahead_of_the_route_table_waits_for_it_instead_of_being_refused(gateway, client, echo_server):
    """The database already knows the task (just created, just started) but the gateway's
    table does not yet: the request is answered from a table read after it arrived."""
    loop = asyncio.get_running_loop()
    gateway.set_table(RouteTable(token_users=gateway.table.token_users), read_at=loop.time() - 1)
    reloads = []

    def reload() -> None:  # as the reload loop does when asked: read the database again, a moment later
        reloads.append(1)
        table = RouteTable(
            routes={
                "new": Route("new", "Just started", OWNER, "running", echo_server),
                "slow": Route("slow", "Still starting", OWNER, "starting", None),
            },
            token_users=gateway.table.token_users,
        )
        loop.call_later(0.05, gateway.set_table, table, loop.time())

    gateway.request_reload = reload
    headers = {"Cookie": f"{COOKIE_NAME}={access_cookie('new')}"}
    response = await client.get("/x", headers=task("new", **headers))
    assert response.status_code == 200 and response.json()["url"] == "/x"
    assert len(reloads) == 1
    # Once the table is as new as the request, "not ready" is the truthful answer, and quick.
    began = loop.time()
    waiting = await client.get("/", headers=task("slow", Cookie=f"{COOKIE_NAME}={access_cookie('slow')}"))
    assert waiting.status_code == 503 and "Still starting" in waiting.text
    assert loop.time() - began < 0.5 and len(reloads) == 2
    assert (await client.get("/", headers=task("nothing"))).status_code == 404


async def test_a_table_that_never_catches_up_delays_an_answer_by_a_second_at_most(gateway, client):
    loop = asyncio.get_running_loop()
    gateway.set_table(RouteTable(), read_at=loop.time() + 3600)  # read "later": nothing to wait for
    assert (await client.get("/", headers=task("unknown"))).status_code == 404
    gateway.set_table(RouteTable(), read_at=loop.time() - 1)  # stale, and no reload ever comes
    began = loop.time()
    assert (await client.get("/", headers=task("unknown"))).status_code == 404
    assert 0.9 < loop.time() - began < 2
