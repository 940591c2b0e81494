"""The built-in environments, used as a scientist uses them, through the gateway: JupyterLab's
kernels with Jupyter's own protocol, the desktop in Chromium. Their per-task secret keeps out
whoever reaches the container without the gateway, and shows up nowhere."""

from __future__ import annotations

import datetime
import json
import re
import shutil
import uuid

import httpx
import pytest
import websockets.sync.client

from rosetta.tasks.probe import PROBE_PATH
from tests.e2e.test_browser import CHROMIUM, FLAGS
from tests.instance import Platform

SECRET_ENV = "ROSETTA_TASK_SECRET"

pytestmark = pytest.mark.podman


@pytest.fixture(scope="module")
def environments(tmp_path_factory):
    """A Rosetta whose catalogue holds the large built-in environments (no registry: they run here)."""
    instance = Platform(
        tmp_path_factory.mktemp("rosetta-environments"),
        settings={"ROSETTA_DEMO_SOFTWARE": "jupyterlab,desktop", "ROSETTA_REGISTRY_LISTEN": "off"},
    )
    instance.set_up()
    instance.start()
    yield instance
    instance.stop()


def container(platform: Platform, task_id: str) -> dict:
    return json.loads(platform.podman("inspect", "--type", "container", f"rosetta-{task_id}"))[0]


def secret_of(platform: Platform, task_id: str) -> str:
    """What the platform gave the container (podman shows it to root, as it shows everything)."""
    env = dict(entry.split("=", 1) for entry in container(platform, task_id)["Config"]["Env"])
    return env[SECRET_ENV]


def direct_address(platform: Platform, task_id: str, port: int) -> str:
    """The interface's own address on the task's network, where the gateway connects."""
    networks = container(platform, task_id)["NetworkSettings"]["Networks"]
    address = next(network["IPAddress"] for network in networks.values() if network.get("IPAddress"))
    return f"http://{address}:{port}"


def execute(channels, code: str, timeout: float = 60) -> tuple[str, dict]:
    """Run ``code`` in the kernel with Jupyter's messaging protocol (v5) over the kernel's
    WebSocket; what it printed, and the execute_reply's content."""
    msg_id = uuid.uuid4().hex
    channels.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "date": datetime.datetime.now(datetime.UTC).isoformat(),
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )  # fmt: skip
    )
    printed, reply = "", None
    while reply is None or not printed:
        message = json.loads(channels.recv(timeout=timeout))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = message["msg_type"]
        if kind == "stream":
            printed += message["content"]["text"]
        elif kind == "error":
            raise AssertionError("\n".join(message["content"]["traceback"]))
        elif kind == "execute_reply":
            reply = message["content"]
            if reply["status"] != "ok":
                raise AssertionError(reply)
    return printed, reply


def test_jupyterlab_kernel_through_the_gateway_and_nothing_without_it(environments):
    platform = environments
    token = platform.create_user("kepler")
    api = platform.api(token)
    # The command the README gives, with its defaults (1 CPU, 512 MiB).
    started = platform.rosetta("task", "start", "jupyterlab", "--on", "local", "--wait", "--json", token=token)
    task = json.loads(started.stdout)
    task_id = task["id"]
    assert task["phase"] == "running", task

    # Through the gateway with the user's API token: Jupyter's REST API starts a kernel...
    jupyter = platform.task_client(task_id, token)
    assert jupyter.get("/api/status").status_code == 200
    started = jupyter.post("/api/kernels", json={"name": "python3"})
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    # ... and the kernel runs code sent over its WebSocket, scientific Python at hand.
    with websockets.sync.client.connect(
        f"ws://{task_id}.localhost:{platform.port}/api/kernels/{kernel}/channels",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
    ) as channels:
        code = (
            "import os, numpy, scipy, matplotlib, astropy, astropy.units as u\n"
            "print('numpy', numpy.__version__, 'astropy', astropy.__version__, (1 * u.km).to(u.m))\n"
            f"print('secret in kernel environment:', {SECRET_ENV!r} in os.environ)"
        )
        printed, _ = execute(channels, code)
    assert "numpy 1." in printed or "numpy 2." in printed, printed
    assert "1000.0 m" in printed, printed
    assert "secret in kernel environment: False" in printed

    # The same port reached directly, without the gateway's secret, gives nothing: no API, no
    # kernels, no pages; a guessed secret no better. Only the real one opens it.
    secret = secret_of(platform, task_id)
    direct = httpx.Client(base_url=direct_address(platform, task_id, 8888), timeout=10)
    for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": f"Bearer {token}"}):
        assert direct.get("/api/kernels", headers=headers).status_code == 403, headers
        assert direct.post("/api/kernels", json={"name": "python3"}, headers=headers).status_code == 403
        page = direct.get("/lab", headers=headers)
        assert page.status_code == 302 and page.headers["location"].startswith("/login"), headers
    assert direct.get("/api/kernels", headers={"Authorization": f"Bearer {secret}"}).status_code == 200

    # The secret is in no API answer, page, event or log.
    browser_view = [
        api.get(f"/api/tasks/{task_id}").text,
        api.get("/api/tasks").text,
        platform.rosetta("task", "show", task_id, "--json", token=token).stdout,
        platform.rosetta("task", "logs", task_id, token=token).stdout,
        platform.logs(),
    ]
    assert len(secret) >= 43 and not any(secret in text for text in browser_view)
    # The log tells what the interface was asked, by the requests above, but not by the
    # platform's own readiness probe.
    logs = browser_view[3]
    assert "403 GET /api/kernels" in logs and PROBE_PATH not in logs, logs
    assert api.delete(f"/api/tasks/{task_id}").status_code in (200, 202, 204)


def test_hello_answers_only_the_gateway(platform):
    """hello's own port, reached from this machine without the gateway: 401 for every request,
    its readiness probe included, and nothing of the task's; through the gateway, the page."""
    token = platform.create_user("hello-guarded")
    with platform.api(token) as api:
        task_id = platform.start_task(api, name="guarded", environment={"NOTE": "kept-inside-the-task"})
        platform.wait_for_task(api, task_id, {"running"})
    secret = secret_of(platform, task_id)
    direct = httpx.Client(base_url=direct_address(platform, task_id, 8080), timeout=10)
    for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": f"Bearer {token}"}):
        for path in ("/", "/index.html", PROBE_PATH, "/cgi-bin/env"):
            refused = direct.get(path, headers=headers)
            assert refused.status_code == 401, (path, headers)
            assert "kept-inside-the-task" not in refused.text and "Hello" not in refused.text
        assert direct.post("/", content=b"x" * 100, headers=headers).status_code == 401
    # The real secret opens it; no page shows the environment any more.
    assert "Hello from Rosetta" in direct.get("/", headers={"Authorization": f"Bearer {secret}"}).text
    assert direct.get("/cgi-bin/env", headers={"Authorization": f"Bearer {secret}"}).status_code == 404
    page = platform.task_client(task_id, token).get("/")
    assert page.status_code == 200 and "Hello from Rosetta" in page.text

    # Its log names each request's path, without the platform's probe, and never the secret.
    logs = platform.rosetta("task", "logs", task_id, token=token).stdout
    assert "request /index.html" in logs and "/index.html response:401" in logs and "/ response:200" in logs, logs
    assert PROBE_PATH not in logs and secret not in logs


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is installed by scripts/setup.sh --for-tests")
def test_desktop_in_the_browser_connects_without_a_password_and_runs_ds9(environments, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    platform = environments
    api = platform.api(platform.create_user("hubble", password="andromeda is far away"))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        context = browser.new_context(viewport={"width": 1100, "height": 700})
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.goto(f"{platform.url}/login/")
        page.get_by_label("Username").fill("hubble")
        page.get_by_label("Password").fill("andromeda is far away")
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{platform.url}/tasks/new/?software=desktop")
        page.get_by_label("Name").fill("sky")
        page.get_by_label("Memory").fill("1536M")
        page.get_by_role("button", name="Start task").click()
        expect(page.locator("[data-field=phase]")).to_have_text("running", timeout=120_000)
        task_id = re.search(r"/tasks/(t[a-z0-9]+)/", page.url).group(1)

        with context.expect_page() as opened:
            page.get_by_role("link", name="Open").click()
        desktop = opened.value
        # noVNC connects by itself: no password prompt, a canvas with the desktop on it.
        expect(desktop).to_have_url(re.compile(rf"^http://{task_id}\.localhost:{platform.port}/vnc\.html\?"))
        canvas = desktop.locator("#noVNC_container canvas")
        expect(canvas).to_be_visible()
        expect(desktop.locator("#noVNC_credentials_dlg")).not_to_be_visible()
        desktop.wait_for_function(COLOURFUL_CANVAS, timeout=30_000)
        canvas.screenshot(path=tmp_path / "desktop.png")
        assert (tmp_path / "desktop.png").stat().st_size > 5_000  # a drawn desktop, not one flat colour

        # A scientist types into the desktop's terminal: DS9 starts.
        canvas.click(position={"x": 250, "y": 200})  # the terminal, at +30+30
        desktop.keyboard.type("ds9 &", delay=20)
        desktop.keyboard.press("Enter")
        ds9 = None
        for _ in range(100):
            processes = platform.podman("top", f"rosetta-{task_id}", "args")
            ds9 = next((line for line in processes.splitlines() if "ds9" in line), None)
            if ds9:
                break
            desktop.wait_for_timeout(200)
        assert ds9, processes
        context.close()
        browser.close()

    assert SECRET_ENV not in platform.podman("top", f"rosetta-{task_id}", "args")
    assert api.delete(f"/api/tasks/{task_id}").status_code in (200, 202, 204)


# True once the canvas shows more than a few colours (the desktop, its panel, a terminal).
COLOURFUL_CANVAS = """() => {
    const canvas = document.querySelector('#noVNC_container canvas');
    if (!canvas || canvas.width < 100 || canvas.height < 100) return false;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    for (let i = 0; i < data.length; i += 4 * 97) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    return colours.size > 8;
}"""
