"""The gateway in front of real upstream servers, driven by real HTTP and WebSocket clients."""

import asyncio
import urllib.parse

import httpx
import pytest
import websockets.asyncio.client
import websockets.asyncio.server

from rosetta.accounts.tokens import hash_token, new_token
from rosetta.computing.errors import Unreachable
from rosetta.gateway.access import COOKIE_NAME, mint_access_token
from rosetta.gateway.proxy import Gateway, GatewayConfig
from rosetta.gateway.routes import Route, RouteTable
from tests.integration.gateway_support import (
    BIG_BODY,
    KEY,
    OWNER,
    PUBLIC_PORT,
    PUBLIC_URL,
    STAFF,
    STRANGER,
    EchoUpstream,
    Response,
    access_cookie,
    event_loop_policy,  # noqa: F401 -- a fixture: every test runs on asyncio's loop and on uvloop
    free_port,
    header,
    open_raw,
    parse_responses,
    raw_exchange,
    running_gateway,
    task,
)

# The forward-compatible pytest_asyncio_loop_factories hook needs a conftest.py; until this
# suite has one for the gateway, the (deprecated) policy fixture parametrizes the loop.
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning')


@pytest.fixture
async def echo_server():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EchoUpstream("task"), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[:2]
    server.close()


@pytest.fixture
def platform_requests():
    """(method, target) of every request the platform received."""
    return []


@pytest.fixture
async def platform_socket(tmp_path, platform_requests):
    path = str(tmp_path / "platform.sock")
    server = await asyncio.get_running_loop().create_unix_server(
        lambda: EchoUpstream("platform", platform_requests), path
    )
    yield path
    server.close()


@pytest.fixture
def reached():
    """Every (host, port) the gateway asked a remote task's connector for."""
    return []


@pytest.fixture
async def tunnel_socket(tmp_path):
    """What a remote task's connector hands over: a unix socket here that leads to the task."""
    path = str(tmp_path / "tunnel.sock")
    server = await asyncio.get_running_loop().create_unix_server(lambda: EchoUpstream("remote"), path)
    yield path
    server.close()


@pytest.fixture
async def websocket_server():
    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async with websockets.asyncio.server.serve(echo, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[:2]


TASK_SECRET = "s3cret-of-the-task"
SECRET_HEADER = f"Authorization: Bearer {TASK_SECRET}\r\n".encode()


@pytest.fixture
async def guarded_websocket_server():
    """A WebSocket echo that, like the built-in environments, refuses handshakes without the task's secret."""

    def check_secret(connection, request):
        if request.headers.get_all("Authorization") != [f"Bearer {TASK_SECRET}"]:
            return connection.respond(401, "task secret missing\n")
        return None

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async with websockets.asyncio.server.serve(echo, "127.0.0.1", 0, process_request=check_secret) as server:
        yield next(iter(server.sockets)).getsockname()[:2]


@pytest.fixture
def api_token():
    return new_token()


@pytest.fixture
async def gateway(echo_server, platform_socket, websocket_server, guarded_websocket_server, api_token, tunnel_socket,
                  reached):  # fmt: skip
    async def through_tunnel(host: str, port: int) -> str:
        reached.append((host, port))
        return tunnel_socket

    async def host_down(host: str, port: int) -> str:
        raise Unreachable("The connection to the host broke.")

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
            "t6": Route("t6", "Guarded", OWNER, "running", echo_server, authorization=SECRET_HEADER),
            "wss": Route(
                "wss", "Guarded sockets", OWNER, "running", guarded_websocket_server, authorization=SECRET_HEADER
            ),
            "r1": Route("r1", "Remote", OWNER, "running", ("127.0.0.1", 8080), reach=through_tunnel),
            "r2": Route("r2", "Remote, host down", OWNER, "running", ("127.0.0.1", 8080), reach=host_down),
        },
        staff_ids=frozenset({STAFF}),
        token_users={hash_token(api_token): OWNER, hash_token("rst_stranger"): STRANGER},
        epochs=dict.fromkeys((OWNER, STRANGER, STAFF), 0),
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


def login_form(token: str, next_path: str = "/") -> dict:
    """What the platform's hand-over page posts to a task's origin."""
    return {"data": {"token": token, "next": next_path}, "headers": task("t1", Origin=PUBLIC_URL)}


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


async def test_the_task_secret_replaces_whatever_authorization_the_client_sent(client, api_token):
    for authorization in (f"Bearer {api_token}", "Bearer guessed-secret", "Basic YTpi"):
        response = await client.get(
            "/", headers=task("t6", Authorization=authorization, Cookie=f"{COOKIE_NAME}={access_cookie('t6')}")
        )
        assert response.status_code == 200
        assert header(response.json(), "Authorization") == [f"Bearer {TASK_SECRET}"], authorization
    # A task without a secret of its own (the route has none) still gets the client's header.
    response = await client.get(
        "/", headers=task("t1", Authorization="Basic YTpi", Cookie=f"{COOKIE_NAME}={access_cookie()}")
    )
    assert header(response.json(), "Authorization") == ["Basic YTpi"]


async def test_websocket_upgrades_carry_the_task_secret(gateway, api_token):
    port = gateway.addresses[0][1]
    async with websockets.asyncio.client.connect(
        f"ws://wss.localhost:{port}/socket",
        host="127.0.0.1",
        port=port,
        additional_headers={"Authorization": f"Bearer {api_token}"},
    ) as connection:
        await connection.send("through")
        assert await connection.recv() == "through"
    # The same server, reached without the gateway, refuses.
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.asyncio.client.connect(f"ws://127.0.0.1:{gateway.table.routes['wss'].upstream[1]}/"):
            pass
    assert refused.value.response.status_code == 401


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
    token = mint_access_token(KEY, OWNER, "t1", epoch=0)
    form = login_form(token, "/lab?reset")
    response = await client.post("/.rosetta/login", **form)
    assert response.status_code == 303
    assert response.headers["Location"] == "/lab?reset"
    set_cookie = response.headers["Set-Cookie"]
    attributes = [part.strip().lower() for part in set_cookie.split(";")]
    assert set_cookie.startswith(f"{COOKIE_NAME}=")
    assert {"path=/", "httponly", "samesite=lax"} <= set(attributes)
    assert not any(attribute.startswith("domain") for attribute in attributes)
    assert "secure" not in attributes

    again = await client.post("/.rosetta/login", **form)
    assert again.status_code == 403
    assert "expired or was already used" in again.text
    assert f'href="{PUBLIC_URL}/tasks/t1"' in again.text

    cookie = set_cookie.split(";")[0]
    opened = await client.get("/lab", headers=task("t1", Cookie=cookie))
    assert opened.status_code == 200
    assert opened.json()["url"] == "/lab"


async def test_login_refuses_an_offsite_next(client):
    token = mint_access_token(KEY, OWNER, "t1", epoch=0)
    response = await client.post("/.rosetta/login", **login_form(token, "//evil.example/"))
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


async def test_login_token_of_another_task_is_refused(client):
    token = mint_access_token(KEY, OWNER, "ws", epoch=0)
    response = await client.post("/.rosetta/login", **login_form(token))
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
    assert "failed" in response.text and "will not come back" in response.text
    assert f'href="{PUBLIC_URL}/tasks/t4/"' in response.text and f'href="{PUBLIC_URL}/tasks/"' in response.text
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


async def test_a_remote_task_is_reached_once_per_client_connection(client, api_token, reached):
    """A remote task's connector (an SSH forward) is asked once, and its connection, one SSH
    channel, carries every request of the client's keep-alive connection; a host that cannot be
    reached is a page."""
    connections = set()
    for number in range(3):
        response = await client.get(f"/{number}", headers=task("r1", Authorization=f"Bearer {api_token}"))
        assert response.status_code == 200
        assert response.json()["server"] == "remote" and response.json()["url"] == f"/{number}"
        connections.add(response.json()["connection"])
    assert len(connections) == 1
    assert reached == [("127.0.0.1", 8080)]  # where the task listens as its host sees it
    response = await client.get("/", headers=task("r2", Authorization=f"Bearer {api_token}"))
    assert response.status_code == 503
    assert "Remote, host down" in response.text


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
        origin=f"http://ws.localhost:{PUBLIC_PORT}",
        additional_headers={"Cookie": f"{COOKIE_NAME}={access_cookie('ws')}"},
    ) as connection:
        for message in ["hello", "x" * 200_000, b"\x00\x01binary"]:
            await connection.send(message)
            assert await connection.recv() == message


async def test_websocket_without_credentials_is_refused(gateway):
    port = gateway.addresses[0][1]
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.asyncio.client.connect(
            f"ws://ws.localhost:{port}/socket", host="127.0.0.1", port=port, origin=f"http://ws.localhost:{PUBLIC_PORT}"
        ):
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
    table = RouteTable(routes={"t1": Route("t1", "One", OWNER, "running", echo_server)}, epochs={OWNER: 0})
    gateway = Gateway(config, table)
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
    cookie = access_cookie()
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
    gateway.set_table(RouteTable(token_users=gateway.table.token_users, epochs={OWNER: 0}), read_at=loop.time() - 1)
    reloads = []

    def reload() -> None:  # as the reload loop does when asked: read the database again, a moment later
        reloads.append(1)
        table = RouteTable(
            routes={
                "new": Route("new", "Just started", OWNER, "running", echo_server),
                "slow": Route("slow", "Still starting", OWNER, "starting", None),
            },
            token_users=gateway.table.token_users,
            epochs={OWNER: 0},
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


async def test_forwarding_and_hop_by_hop_headers_are_the_gateways(client, api_token):
    spoofed = {
        "Forwarded": "for=6.6.6.6;host=evil.example",
        "X-Real-IP": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "Keep-Alive": "timeout=600",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "h2c",
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "for the next hop only",
        "X-Kept": "yes",
    }
    response = await client.get("/", headers=task("t1", Authorization=f"Bearer {api_token}", **spoofed))
    echo = response.json()
    assert header(echo, "Forwarded") == ['for=127.0.0.1;proto=http;host="t1.localhost:8000"']
    assert header(echo, "X-Real-IP") == ["127.0.0.1"]
    assert header(echo, "X-Forwarded-Host") == ["t1.localhost:8000"]
    for hop_by_hop in ("Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "Connection", "X-Hop-Secret"):
        assert header(echo, hop_by_hop) == [], hop_by_hop
    assert header(echo, "X-Kept") == ["yes"]


async def test_connection_close_reaches_the_upstream(client, api_token):
    response = await client.get("/", headers=task("t1", Authorization=f"Bearer {api_token}", Connection="close"))
    assert header(response.json(), "Connection") == ["close"]


async def test_pipelined_requests_to_different_targets_are_answered_in_order(gateway, api_token):
    """Browsers do not pipeline, but nothing may mix responses up for a client that does."""
    authorization = f"Authorization: Bearer {api_token}\r\n"
    requests = [
        f"GET /one HTTP/1.1\r\nHost: t1.localhost\r\n{authorization}\r\n",
        "GET /two HTTP/1.1\r\nHost: localhost\r\n\r\n",
        f"HEAD /three HTTP/1.1\r\nHost: t1.localhost\r\n{authorization}\r\n",
        f"POST /four HTTP/1.1\r\nHost: t1.localhost\r\n{authorization}Content-Length: 4\r\n\r\nbody",
        f"GET /five HTTP/1.1\r\nHost: t3.localhost\r\n{authorization}\r\n",  # the gateway's own 503
        f"GET /six HTTP/1.1\r\nHost: t1.localhost\r\n{authorization}\r\n",  # after that, none
    ]
    response = await raw_exchange(gateway, "".join(requests).encode())
    one, two, three, four, five = parse_responses(response, head_requests=(2,))
    assert (one.json()["server"], one.json()["url"]) == ("task", "/one")
    assert (two.json()["server"], two.json()["url"]) == ("platform", "/two")
    assert three.status == 200 and three.body == b""
    assert (four.json()["url"], four.json()["body"]) == ("/four", "body")
    assert five.status == 503 and b"Waiting" in five.body


async def test_an_upgrade_the_upstream_declines_is_not_a_tunnel(gateway, api_token):
    """Without a 101 the connection stays HTTP: later requests get the gateway's header
    hygiene (here: the API token is not handed to the task, X-Forwarded-For is the gateway's)."""
    reader, writer = await open_raw(gateway)
    writer.write(
        b"GET /socket HTTP/1.1\r\nHost: t1.localhost:8000\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Origin: http://t1.localhost:8000\r\nAuthorization: Bearer %b\r\n\r\n" % api_token.encode()
    )
    declined = await read_one_response(reader)
    assert declined.status == 200 and declined.json()["url"] == "/socket"
    writer.write(
        b"GET /after HTTP/1.1\r\nHost: t1.localhost:8000\r\nAuthorization: Bearer %b\r\n"
        b"X-Forwarded-For: 6.6.6.6\r\n\r\n" % api_token.encode()
    )
    after = (await read_one_response(reader)).json()
    writer.close()
    assert after["url"] == "/after"
    assert header(after, "Authorization") == [] and header(after, "X-Forwarded-For") == ["127.0.0.1"]


async def read_one_response(reader: asyncio.StreamReader) -> Response:
    data = b""
    while True:
        data += await asyncio.wait_for(reader.read(65536), 5)
        head, _, body = data.partition(b"\r\n\r\n")
        length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        if length and len(body) >= int(length[0].split(b":")[1]):
            return parse_responses(data)[0]


async def test_a_refusal_ends_the_connection_even_when_a_huge_body_is_announced(gateway):
    reader, writer = await open_raw(gateway)
    writer.write(b"POST / HTTP/1.1\r\nHost: t1.localhost\r\nContent-Length: 536870912\r\n\r\n" + b"x" * 4096)
    began = asyncio.get_running_loop().time()
    response = await asyncio.wait_for(reader.read(), 5)  # EOF right after the answer
    writer.close()
    assert response.startswith(b"HTTP/1.1 401 ") and b"Connection: close" in response
    assert asyncio.get_running_loop().time() - began < 1


async def test_a_huge_body_for_the_platform_is_refused_before_it_gets_there(gateway, client, platform_requests):
    reader, writer = await open_raw(gateway)
    writer.write(
        b"POST /login/ HTTP/1.1\r\nHost: localhost:8000\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 536870912\r\n\r\n" + b"username=a&password=" + b"x" * 65536
    )
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 413 ")
    assert platform_requests == []
    assert (await client.post("/login/", content=b"x" * 1000, headers={"Host": "localhost"})).status_code == 200
    assert platform_requests == [("POST", "/login/")]


async def test_a_chunked_body_for_the_platform_is_cut_off_at_the_limit(platform_socket, platform_requests):
    async with running_gateway(RouteTable(), platform_socket, max_platform_body=100_000) as gateway:
        reader, writer = await open_raw(gateway)
        writer.write(b"POST /api/tasks HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(30):
            writer.write(b"1000\r\n" + b"x" * 0x1000 + b"\r\n")
        response = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert response.startswith(b"HTTP/1.1 413 ")
    assert platform_requests == []


async def test_a_websocket_from_another_origin_is_refused(gateway):
    port = gateway.addresses[0][1]
    for origin in ("http://evil.example", "http://t1.localhost:8000", PUBLIC_URL, None):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.asyncio.client.connect(
                f"ws://ws.localhost:{port}/socket",
                host="127.0.0.1",
                port=port,
                origin=origin,
                additional_headers={"Cookie": f"{COOKIE_NAME}={access_cookie('ws')}"},
            ):
                pass
        assert refused.value.response.status_code == 403, origin


async def test_a_script_opens_a_websocket_with_its_api_token_and_no_origin(gateway, api_token):
    port = gateway.addresses[0][1]
    async with websockets.asyncio.client.connect(
        f"ws://ws.localhost:{port}/socket",
        host="127.0.0.1",
        port=port,
        additional_headers={"Authorization": f"Bearer {api_token}"},
    ) as connection:
        await connection.send("hello")
        assert await connection.recv() == "hello"


async def test_the_login_form_is_accepted_only_from_the_platform(client):
    for origin in (None, "null", "http://evil.example", "http://t1.localhost:8000", "http://localhost:8001"):
        token = mint_access_token(KEY, OWNER, "t1", epoch=0)
        headers = task("t1") if origin is None else task("t1", Origin=origin)
        response = await client.post("/.rosetta/login", data={"token": token, "next": "/"}, headers=headers)
        assert response.status_code == 403 and "Set-Cookie" not in response.headers, origin
    # The same token still works from the platform's page: refused forms did not use it up.
    response = await client.post("/.rosetta/login", **login_form(token))
    assert response.status_code == 303


async def test_over_https_the_access_cookie_is_a_host_cookie_and_pages_ask_for_https(echo_server, platform_socket):
    table = RouteTable(routes={"t1": Route("t1", "One", OWNER, "running", echo_server)}, epochs={OWNER: 0})
    settings = {"public_url": "https://rosetta.example.org", "tasks_domain": "example-tasks.org"}
    async with running_gateway(table, platform_socket, **settings) as gateway:
        port = gateway.addresses[0][1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            host = {"Host": "t1.example-tasks.org"}
            token = mint_access_token(KEY, OWNER, "t1", epoch=0)
            signed_in = await client.post(
                "/.rosetta/login",
                data={"token": token, "next": "/"},
                headers={**host, "Origin": "https://rosetta.example.org"},
            )
            assert signed_in.status_code == 303
            assert signed_in.headers["Strict-Transport-Security"].startswith("max-age=")
            name_value, *attributes = [part.strip() for part in signed_in.headers["Set-Cookie"].split(";")]
            assert name_value.startswith("__Host-rosetta-task-access=")
            assert {"Path=/", "HttpOnly", "SameSite=Lax", "Secure"} == set(attributes)  # no Domain
            opened = await client.get("/", headers={**host, "Cookie": name_value})
            assert opened.status_code == 200 and header(opened.json(), "Cookie") == []
            assert header(opened.json(), "X-Forwarded-Proto") == ["https"]
            # The plain name is not a credential over https: any sibling origin could have set it.
            plain = await client.get("/", headers={**host, "Cookie": f"{COOKIE_NAME}={access_cookie()}"})
            assert plain.status_code == 401 and "Strict-Transport-Security" in plain.headers


async def test_over_http_pages_do_not_ask_for_https(client):
    response = await client.get("/", headers=task("t1"))
    assert response.status_code == 401 and "Strict-Transport-Security" not in response.headers


async def test_after_an_access_change_requests_wait_for_the_table_that_knows_it(gateway, client):
    """A user logged out: the platform signalled the gateway before answering the log out, so
    the user's next request must not find the old table still letting the cookie in."""
    loop = asyncio.get_running_loop()
    gateway.set_table(gateway.table, read_at=loop.time())
    gateway.access_changed()
    logged_out = RouteTable(routes=gateway.table.routes, epochs={OWNER: 1})
    loop.call_later(0.05, gateway.set_table, logged_out)
    response = await client.get("/", headers=task("t1", Cookie=f"{COOKIE_NAME}={access_cookie()}"))
    assert response.status_code == 401
    assert (
        await client.get("/", headers=task("t1", Cookie=f"{COOKIE_NAME}={access_cookie(epoch=1)}"))
    ).status_code == 200


async def test_a_request_with_a_body_ahead_of_the_route_table_waits_too(gateway, client, echo_server):
    """Its body waits with it: nothing is lost or reordered while the table catches up."""
    loop = asyncio.get_running_loop()
    gateway.set_table(RouteTable(epochs={OWNER: 0}), read_at=loop.time() - 1)
    table = RouteTable(routes={"new": Route("new", "Just started", OWNER, "running", echo_server)}, epochs={OWNER: 0})
    gateway.request_reload = lambda: loop.call_later(0.05, gateway.set_table, table)
    payload = bytes(range(256)) * 2000
    headers = task("new", Cookie=f"{COOKIE_NAME}={access_cookie('new')}")
    response = await client.put("/upload", content=payload, headers=headers)
    assert response.status_code == 200 and response.json()["body"].encode("latin-1") == payload
