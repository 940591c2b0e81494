"""Gateway processes coming and going: one-time tokens stay used, a replaced gateway refuses
no connection and drops no WebSocket. Real processes (tests/integration/gateway_process.py),
real clients, loopback only."""

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import websockets.sync.client
import websockets.sync.server

from rosetta.gateway.access import COOKIE_NAME, mint_access_token
from tests.integration.gateway_support import (
    KEY,
    OWNER,
    PUBLIC_PORT,
    PUBLIC_URL,
    access_cookie,
    children_of,
    free_port,
)

COOKIES = {"t1": f"{COOKIE_NAME}={access_cookie('t1')}", "ws": f"{COOKIE_NAME}={access_cookie('ws')}"}


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def websocket_upstream():
    def echo(connection):
        for message in connection:
            connection.send(message)

    with websockets.sync.server.serve(echo, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()


class GatewayProcesses:
    """Starts tests/integration/gateway_process.py and stops whatever it started."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen] = []

    def start(self, mode: str, port: int, routes: dict[str, str], used_tokens: Path | None = None) -> subprocess.Popen:
        argv = [sys.executable, "-m", "tests.integration.gateway_process", mode, "--port", str(port)]
        argv += [f"--route={task_id}={address}" for task_id, address in routes.items()]
        argv += ["--used-tokens", str(used_tokens)] if used_tokens else []
        log = open(self.logs / f"{mode}-{port}-{len(self.started)}.log", "wb")  # noqa: SIM115 -- the child keeps it
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(process)
        wait_until_serving(port, process)
        return process

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGINT) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                self.stop(process)

    def output(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}" for path in self.logs.iterdir())


@pytest.fixture
def processes(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    started = GatewayProcesses(logs)
    yield started
    started.stop_all()


def wait_until_serving(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the gateway process ended with {process.returncode}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
            probe.sendall(b"GET / HTTP/1.1\r\nHost: nothing.localhost\r\nConnection: close\r\n\r\n")
            if probe.recv(12).startswith(b"HTTP/1.1"):
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing serves port {port}")


def get(port: int, task_id: str = "t1", path: str = "/", timeout: float = 10) -> int:
    """One request on a connection of its own: the status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Host": f"{task_id}.localhost:{PUBLIC_PORT}", "Cookie": COOKIES[task_id]}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def hand_over(port: int, token: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {
            "Host": f"t1.localhost:{PUBLIC_PORT}",
            "Origin": PUBLIC_URL,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        connection.request("POST", "/.rosetta/login", body=f"token={token}&next=/", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_one_time_token_opens_once_whichever_gateway_process_gets_it(processes, upstream, tmp_path):
    used_tokens = tmp_path / "used-access-tokens.sqlite3"
    first_port, second_port = free_port(), free_port()
    first = processes.start("serve", first_port, {"t1": upstream}, used_tokens)
    processes.start("serve", second_port, {"t1": upstream}, used_tokens)
    token = mint_access_token(KEY, OWNER, "t1", epoch=0)
    assert hand_over(first_port, token) == 303
    assert hand_over(second_port, token) == 403  # another worker
    processes.stop(first)
    processes.start("serve", first_port, {"t1": upstream}, used_tokens)
    assert hand_over(first_port, token) == 403  # the same gateway, restarted
    assert hand_over(second_port, mint_access_token(KEY, OWNER, "t1", epoch=0)) == 303


def gateways_under(supervisor_pid: int) -> set[int]:
    return set(children_of(supervisor_pid))


def until(condition, timeout: float = 30, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def open_websocket(port: int) -> websockets.sync.client.ClientConnection:
    """A WebSocket to task ``ws`` through the gateway, as its own page opens it."""
    return websockets.sync.client.connect(
        f"ws://ws.localhost:{PUBLIC_PORT}/socket",
        sock=socket.create_connection(("127.0.0.1", port)),
        origin=f"http://ws.localhost:{PUBLIC_PORT}",
        additional_headers={"Cookie": COOKIES["ws"]},
    )


def test_replacing_the_gateway_refuses_no_connection_and_keeps_websockets(processes, upstream, websocket_upstream):
    port = free_port()
    supervisor = processes.start("supervise", port, {"t1": upstream, "ws": websocket_upstream})
    (old,) = gateways_under(supervisor.pid)
    with open_websocket(port) as websocket:
        websocket.send("before")
        assert websocket.recv(timeout=5) == "before"

        outcomes: list[object] = []
        stop = threading.Event()

        def requests_in_a_loop() -> None:
            while not stop.is_set():
                try:
                    outcomes.append(get(port))
                except OSError as error:  # refused, reset: whatever a client would see
                    outcomes.append(error)

        looping = threading.Thread(target=requests_in_a_loop)
        looping.start()
        try:
            time.sleep(0.3)
            os.kill(supervisor.pid, signal.SIGHUP)
            until(lambda: len(gateways_under(supervisor.pid) - {old}) == 1, message=processes.output())
            (new,) = gateways_under(supervisor.pid) - {old}
            time.sleep(0.5)  # requests go on against the new one while the old one drains
        finally:
            stop.set()
            looping.join()
        failures = [outcome for outcome in outcomes if outcome != 200]
        assert len(outcomes) > 20 and failures == [], failures

        # The old gateway still carries the WebSocket it had; new ones go to the new gateway.
        assert old in gateways_under(supervisor.pid)
        websocket.send("after")
        assert websocket.recv(timeout=5) == "after"
        with open_websocket(port) as another:
            another.send("new")
            assert another.recv(timeout=5) == "new"
    # Once its last connection ended, the old gateway exits.
    until(lambda: gateways_under(supervisor.pid) == {new}, timeout=10, message=processes.output())
