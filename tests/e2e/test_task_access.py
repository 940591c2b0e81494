"""Who keeps access to a task's origin, and what the front door lets through, against a real
`rosetta run` with podman: logging out and deactivation end task access at once, a huge
anonymous body never reaches the platform, and replacing the gateway refuses nobody."""

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.test_http_flow import login
from tests.integration.gateway_support import children_of

PASSWORD = "nuclear fission 1938"
HEAD_BYTES = 100  # less than any request head the gateway forwards


def csrf_token(browser: httpx.Client) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get("/tasks/").text).group(1)


def one_time_token(browser: httpx.Client, task_id: str) -> str:
    """The token the platform's hand-over page carries (a browser posts it at once)."""
    page = browser.get(f"/tasks/{task_id}/open")
    assert page.status_code == 200
    return re.search(r'name="token" value="([^"]+)"', page.text).group(1)


def hand_over(platform, task_id: str, token: str) -> httpx.Response:
    """Post the hand-over form to the task's origin, as the browser does from the platform's page."""
    with platform.task_client(task_id) as origin:
        return origin.post("/.rosetta/login", data={"token": token, "next": "/"}, headers={"Origin": platform.url})


def open_task(platform, browser: httpx.Client, task_id: str) -> str:
    """Open the task as a browser does; the access cookie it gets (a Cookie header value)."""
    signed_in = hand_over(platform, task_id, one_time_token(browser, task_id))
    assert signed_in.status_code == 303, signed_in.text
    return signed_in.headers["Set-Cookie"].split(";")[0]


def running_task(platform, api_token: str, name: str) -> str:
    with platform.api(api_token) as api:
        task_id = platform.start_task(api, name=name)
        platform.wait_for_task(api, task_id, {"running"})
    return task_id


def test_logging_out_and_deactivation_end_task_access_at_once(platform):
    api_token = platform.create_user("lise", password=PASSWORD)
    task_id = running_task(platform, api_token, "access")
    browser = login(platform, "lise", PASSWORD)
    cookie = open_task(platform, browser, task_id)
    origin = platform.task_client(task_id)
    assert origin.get("/", headers={"Cookie": cookie}).status_code == 200

    logged_out = browser.post("/logout/", data={"csrfmiddlewaretoken": csrf_token(browser)})
    assert logged_out.status_code == 302
    # The very next request with the cookie is refused: scripts get 401, a browser goes back to Rosetta.
    assert origin.get("/", headers={"Cookie": cookie, "Accept": "application/json"}).status_code == 401
    navigation = origin.get("/", headers={"Cookie": cookie, "Accept": "text/html"})
    assert navigation.status_code == 302
    assert navigation.headers["Location"].startswith(f"{platform.url}/tasks/{task_id}/open")

    # Logged in again, the task opens again; the old cookie stays dead.
    browser = login(platform, "lise", PASSWORD)
    cookie_again = open_task(platform, browser, task_id)
    assert origin.get("/", headers={"Cookie": cookie_again}).status_code == 200
    assert origin.get("/", headers={"Cookie": cookie}).status_code == 401

    # An operator deactivates the account: its cookie and its API token stop at the gateway.
    with platform.task_client(task_id, api_token) as script:
        assert script.get("/").status_code == 200
        deactivate = "from django.contrib.auth.models import User; u = User.objects.get(username='lise'); "
        platform.rosetta("manage", "shell", "-c", deactivate + "u.is_active = False; u.save()")
        assert origin.get("/", headers={"Cookie": cookie_again}).status_code == 401
        assert script.get("/").status_code == 401
    origin.close()


def web_process_reads(platform) -> int:
    """Bytes the platform's web process has read so far (from sockets and files alike)."""
    (web,) = [
        pid for pid, command in children_of(platform.processes["run"].pid).items() if command.split()[-1] == "web"
    ]
    io = dict(line.split(": ") for line in Path(f"/proc/{web}/io").read_text().splitlines())
    return int(io["rchar"])


def test_a_huge_anonymous_body_never_reaches_the_platform(platform):
    # An ordinary anonymous form does reach the platform (which refuses it: no CSRF token) ...
    before = web_process_reads(platform)
    assert httpx.post(f"{platform.url}/login/", data={"username": "x", "password": "y"}).status_code == 403
    assert web_process_reads(platform) - before > HEAD_BYTES
    # ... one announcing 512 MiB is answered by the gateway, and the connection ends.
    before = web_process_reads(platform)
    with socket.create_connection(("127.0.0.1", platform.port), timeout=10) as client:
        client.sendall(
            f"POST /login/ HTTP/1.1\r\nHost: localhost:{platform.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 536870912\r\n\r\n".encode()
            + b"username=x&password="
            + b"y" * 65536
        )
        response = b""
        while chunk := client.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 413 ")
    time.sleep(0.5)
    assert web_process_reads(platform) - before < HEAD_BYTES  # a loop's wake-up or two, no request


def test_replacing_the_gateway_refuses_no_one_and_forgets_no_used_token(fresh_platform):
    platform = fresh_platform
    platform.start()  # rosetta run
    api_token = platform.create_user("otto", password=PASSWORD)
    task_id = running_task(platform, api_token, "restart")
    browser = login(platform, "otto", PASSWORD)
    token = one_time_token(browser, task_id)
    signed_in = hand_over(platform, task_id, token)
    assert signed_in.status_code == 303
    cookie = signed_in.headers["Set-Cookie"].split(";")[0]
    supervisor = platform.processes["run"].pid

    def gateways() -> list[int]:
        return [pid for pid, command in children_of(supervisor).items() if " gateway " in command]

    (old_gateway,) = gateways()

    outcomes: list[object] = []
    stop = threading.Event()

    def requests_in_a_loop() -> None:
        while not stop.is_set():
            try:  # a connection of its own each time: a refused one would show
                outcomes.append(httpx.get(f"{platform.url}/login/", timeout=10).status_code)
            except httpx.TransportError as error:
                outcomes.append(error)

    looping = threading.Thread(target=requests_in_a_loop)
    looping.start()
    try:
        time.sleep(0.3)
        os.kill(supervisor, signal.SIGHUP)
        deadline = time.monotonic() + 60
        # Replaced: a new gateway serves, and the old one exits once drained (idle connections
        # close at once).
        while old_gateway in gateways() or len(gateways()) != 1:
            assert time.monotonic() < deadline, platform.logs()
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        looping.join()
    failures = [outcome for outcome in outcomes if outcome != 200]
    assert len(outcomes) > 10 and failures == [], failures
    assert platform.processes["run"].poll() is None

    # The new gateway knows the token was used; the cookie it became still opens the task.
    assert hand_over(platform, task_id, token).status_code == 403
    with platform.task_client(task_id) as origin:
        assert origin.get("/", headers={"Cookie": cookie}).status_code == 200
