"""/metrics for operators: Debian's Prometheus scrapes the platform's public port with a staff
token and finds what the platform did (tasks started, bytes moved, tasks by phase); nobody
else reads it."""

import re
import subprocess
import time

import httpx
import pytest

from tests.instance import free_port


def scraped(platform, token: str) -> str:
    with platform.api(token) as api:
        answer = api.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")  # Prometheus' text format
    return answer.text


def value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert found, f"{series} not in:\n{text}"
    return float(found[1])


@pytest.fixture
def prometheus(tmp_path):
    """A Prometheus of the test's own (Debian's package), scraping nothing until configured."""
    processes = []

    def start(config: str) -> str:
        (tmp_path / "prometheus.yml").write_text(config)
        port = free_port()
        with open(tmp_path / "prometheus.log", "w") as log:
            process = subprocess.Popen(
                ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        processes.append(process)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


def test_operators_read_what_the_platform_did_and_nobody_else_does(platform, prometheus, tmp_path):
    staff = platform.create_user("metrics-staff", admin=True)
    user = platform.create_user("metrics-user")
    with platform.api(user) as api:
        task_id = platform.start_task(api, name="counted")
        platform.wait_for_task(api, task_id, {"running"})
        upload = api.put("/api/storages/home/content", params={"path": "m.bin"}, content=b"x" * 5000)
        assert upload.status_code == 201, upload.text
        assert len(api.get("/api/storages/home/content", params={"path": "m.bin"}).content) == 5000
        assert platform.task_client(task_id, user).get("/").status_code == 200
    deadline = time.monotonic() + 10  # the gateway hands its numbers over every 2 s
    while 'rosetta_gateway_requests_total{kind="task"}' not in (text := scraped(platform, staff)):
        assert time.monotonic() < deadline, text
        time.sleep(0.5)
    assert value(text, 'rosetta_gateway_requests_total{kind="task"}') >= 1
    assert value(text, 'rosetta_gateway_bytes_total{direction="to_clients"}') >= 5000  # the download, at least
    assert value(text, "rosetta_gateway_open_connections") >= 0
    assert value(text, 'rosetta_task_starts_total{resource="local"}') >= 1
    assert value(text, 'rosetta_tasks{phase="running",resource="local"}') >= 1
    assert value(text, 'rosetta_task_start_seconds_count{resource="local"}') >= 1
    assert value(text, 'rosetta_storage_transfer_bytes_total{direction="upload"}') >= 5000
    assert value(text, 'rosetta_storage_transfer_bytes_total{direction="download"}') >= 5000
    assert value(text, "rosetta_controller_pass_seconds_count") >= 1
    assert all(line.startswith(("# ", "rosetta_")) for line in text.splitlines() if line)

    with httpx.Client(base_url=platform.url) as anonymous:
        assert anonymous.get("/metrics").status_code == 403
    with platform.api(user) as api:
        assert api.get("/metrics").status_code == 403  # not staff
    with platform.api(staff) as api:
        limited = api.post("/api/tokens", json={"name": "no-admin", "scopes": ["read"]}).json()["token"]
    with platform.api(limited) as api:
        assert api.get("/metrics").status_code == 403  # staff, but the token was not made for staff powers

    (tmp_path / "token").write_text(staff)
    address = platform.url.removeprefix("http://")
    server = prometheus(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: rosetta\n"
        "    metrics_path: /metrics\n"
        f"    authorization: {{credentials_file: {tmp_path / 'token'}}}\n"
        f"    static_configs: [{{targets: ['{address}']}}]\n"
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            answer = httpx.get(
                f"{server}/api/v1/query", params={"query": 'rosetta_task_starts_total{resource="local"}'}
            )
            result = answer.json()["data"]["result"] if answer.status_code == 200 else []
        except httpx.TransportError:
            result = []
        if result:
            break
        assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-3000:]
        time.sleep(0.5)
    assert float(result[0]["value"][1]) >= 1 and result[0]["metric"]["job"] == "rosetta"
    with platform.api(user) as api:
        api.post(f"/api/tasks/{task_id}/stop")


def test_a_request_smuggled_past_the_gateway_in_a_body_never_reaches_the_platform(platform):
    """A Connection header naming Content-Length would have the gateway drop it on the way: the
    platform would read the body as a request of its own, one the gateway never checked (with
    an X-Forwarded-For of the sender's choosing). The gateway refuses such a head."""
    import socket

    port = int(platform.url.rsplit(":", 1)[1])
    inner = f"GET /metrics HTTP/1.1\r\nHost: localhost:{port}\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n".encode()
    outer = (
        f"POST /api/health HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: {len(inner)}\r\n"
        "Connection: Content-Length\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(outer + inner)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.count(b"HTTP/1.1 ") == 1 and b"rosetta_" not in answer
