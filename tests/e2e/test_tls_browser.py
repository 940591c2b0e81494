"""The public deployment's front: Debian's nginx ending TLS in front of the gateway, configured
with exactly what `rosetta tls-config nginx` prints (docs/deployment.md), a wildcard certificate
for the task origins from a CA of the test's own, and a scientist in Chromium over https:
HTTP/2, `__Host-` cookies, HSTS, a Jupyter kernel over wss://. The SSH door stays beside it."""

from __future__ import annotations

import re
import shutil
import socket
import ssl

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.test_browser import CHROMIUM, FLAGS
from tests.instance import Platform, free_port
from tests.netns import quiet_browser
from tests.tls import Nginx, make_certificate, nginx_available

PASSWORD = "over https only, please"
TASKS_DOMAIN = "tasks.localhost"  # a wildcard one label below a top-level name: *.localhost would match no name
HSTS = "max-age=31536000"
FORM_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

pytestmark = [
    pytest.mark.podman,
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is installed by scripts/setup.sh"),
    pytest.mark.skipif(not nginx_available(), reason="Debian's nginx is installed by scripts/setup.sh --for-tests"),
]

# Run in the task's page: start a kernel with Jupyter's REST API, run code over the kernel's
# WebSocket (wss://, the page's own origin), and return what it printed.
KERNEL_ROUND_TRIP = """async () => {
  const started = await fetch('/api/kernels', {
    method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'python3'}),
  });
  if (started.status !== 201) throw new Error('kernel not started: ' + started.status + ' ' + await started.text());
  const kernel = (await started.json()).id;
  const socket = new WebSocket(`wss://${location.host}/api/kernels/${kernel}/channels`);
  const msgId = crypto.randomUUID();
  return await new Promise((resolve, reject) => {
    // The reply (shell) may overtake the output (iopub): done once both the reply and the
    // kernel's idle status for this request (iopub, after its output) have come.
    let printed = '', replied = false, idle = false;
    const finish = () => { socket.close(); resolve({printed, url: socket.url}); };
    setTimeout(finish, 60000);
    socket.onerror = () => reject(new Error('the WebSocket failed'));
    socket.onopen = () => socket.send(JSON.stringify({
      header: {msg_id: msgId, msg_type: 'execute_request', username: 'test', session: crypto.randomUUID(),
               date: new Date().toISOString(), version: '5.3'},
      parent_header: {}, metadata: {}, channel: 'shell', buffers: [],
      content: {code: 'print(6 * 7)', silent: false, store_history: false, user_expressions: {},
                allow_stdin: false, stop_on_error: true},
    }));
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.parent_header?.msg_id !== msgId) return;
      if (message.msg_type === 'stream') printed += message.content.text;
      if (message.msg_type === 'status' && message.content.execution_state === 'idle') idle = true;
      if (message.msg_type === 'execute_reply') replied = true;
      if (replied && idle) finish();
    };
  });
}"""

NEXT_HOP_PROTOCOL = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"


@pytest.fixture(scope="module")
def behind_tls(tmp_path_factory):
    """A Rosetta with its SSH door, whose public URL is https on nginx's port; nginx in front."""
    https_port = free_port()
    instance = Platform(
        tmp_path_factory.mktemp("rosetta-tls"),
        ssh_door=True,
        settings={
            "ROSETTA_PUBLIC_URL": f"https://localhost:{https_port}",
            "ROSETTA_TASKS_DOMAIN": TASKS_DOMAIN,
            "ROSETTA_TRUSTED_PROXIES": "127.0.0.1,::1",  # nginx, which names each client
            "ROSETTA_DEMO_SOFTWARE": "hello,jupyterlab",
            "ROSETTA_REGISTRY_LISTEN": "off",  # the built-in images run here: nothing to copy
        },
    )
    certificate = make_certificate(instance.home.parent, ["localhost", f"*.{TASKS_DOMAIN}"])
    instance.set_up()
    # As docs/deployment.md runs it: the gateway on loopback for the terminator, the SSH door on
    # the addresses users reach (here one loopback address, to tell the two apart).
    instance._spawn("run", ["run", "--host", "localhost", "--port", str(instance.port), "--ssh-host", "127.0.0.1"])
    try:
        instance.wait_until_up()
        with quiet_browser("192.168.78.2", "192.168.78.1") as (host, chromium):
            config = instance.rosetta(
                "tls-config", "nginx",
                "--certificate", str(certificate.chain),
                "--key", str(certificate.key),
                "--gateway", f"127.0.0.1:{instance.port}",
                "--listen", f"127.0.0.1:{https_port}",
                "--listen", f"[::1]:{https_port}",
                "--listen", f"{host}:{https_port}",  # where the test's Chromium reaches this machine
            ).stdout  # fmt: skip
            nginx = Nginx(config, https_port)
            try:
                yield instance, nginx, certificate, (host, chromium)
            finally:
                nginx.stop()
    finally:
        instance.stop()


def test_the_certificate_covers_the_platform_and_every_task_origin_and_offers_http2(behind_tls):
    _, nginx, certificate, _ = behind_tls
    trusting = ssl.create_default_context(cafile=str(certificate.ca))
    trusting.set_alpn_protocols(["h2", "http/1.1"])
    for name in ("localhost", f"t0123456789.{TASKS_DOMAIN}"):
        with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as raw:
            with trusting.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.selected_alpn_protocol() == "h2", name
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # A name the certificate does not cover is refused by a client that checks.
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            trusting.wrap_socket(raw, server_hostname="deeper.t0123456789.tasks.localhost")


def test_a_scientist_over_https_jupyter_kernel_over_wss(behind_tls):
    platform, nginx, certificate, (host, chromium) = behind_tls
    public = f"https://localhost:{nginx.port}"
    platform.create_user("rubin", password=PASSWORD)
    flags = [
        *FLAGS,
        # The browser's namespace has a loopback of its own: the site's names lead to this machine.
        f"--host-resolver-rules=MAP localhost {host}, MAP *.{TASKS_DOMAIN} {host}",
        # Chromium trusts the test's certificate by its key (there is no CA store to add to here).
        f"--ignore-certificate-errors-spki-list={certificate.spki_sha256}",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags)
        context = browser.new_context()
        context.set_default_timeout(30_000)
        page = context.new_page()
        try:
            login_page = page.goto(f"{public}/tasks/")
            expect(page).to_have_url(f"{public}/login/?next=/tasks/")
            assert login_page.header_values("strict-transport-security") == [HSTS]
            assert page.evaluate(NEXT_HOP_PROTOCOL) == "h2"
            page.get_by_label("Username").fill("rubin")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{public}/tasks/")
            platform_cookies = {cookie["name"]: cookie for cookie in context.cookies(public)}
            session = platform_cookies["__Host-rosetta_session"]
            assert session["secure"] and session["httpOnly"] and session["domain"] == "localhost"
            assert session["path"] == "/"
            assert all(name.startswith("__Host-") for name in platform_cookies), platform_cookies

            page.goto(f"{public}/tasks/new/?software=jupyterlab")
            page.get_by_label("Name").fill("over-tls")
            page.get_by_role("button", name="Start task").click()
            expect(page.locator("[data-field=phase]")).to_have_text("running", timeout=120_000)
            task_id = re.search(r"/tasks/(t[a-z0-9]+)/", page.url).group(1)
            origin = f"https://{task_id}.{TASKS_DOMAIN}:{nginx.port}"
            with context.expect_page() as opened:
                page.get_by_role("link", name="Open").click()
            lab = opened.value
            expect(lab).to_have_url(re.compile(rf"^{re.escape(origin)}/"))
            answer = lab.goto(f"{origin}/lab")
            assert answer.ok and answer.header_values("strict-transport-security") == [HSTS]
            assert lab.evaluate(NEXT_HOP_PROTOCOL) == "h2"
            task_cookies = {cookie["name"]: cookie for cookie in context.cookies(origin)}
            access = task_cookies["__Host-rosetta-task-access"]
            assert access["secure"] and access["httpOnly"] and access["domain"] == f"{task_id}.{TASKS_DOMAIN}"
            assert "rosetta-task-access" not in task_cookies and "__Host-rosetta-task-access" not in {
                cookie["name"] for cookie in context.cookies(public)
            }

            sockets = []
            lab.on("websocket", lambda socket: sockets.append(socket.url))
            kernel = lab.evaluate(KERNEL_ROUND_TRIP)
            assert kernel["printed"] == "42\n", kernel
            assert kernel["url"].startswith(f"wss://{task_id}.{TASKS_DOMAIN}:{nginx.port}/api/kernels/")
            assert any(url.startswith("wss://") for url in sockets), sockets
        finally:
            context.close()
            browser.close()
    assert "[error]" not in nginx.errors() and "[emerg]" not in nginx.errors(), nginx.errors()


def test_the_ssh_door_listens_beside_the_terminator_on_its_own_addresses(behind_tls):
    platform, nginx, _, _ = behind_tls
    # SSH is not HTTP: users reach the door on its own port and addresses (--ssh-host), not through nginx.
    with socket.create_connection(("127.0.0.1", platform.ssh_port), timeout=10) as door:
        assert door.recv(64).startswith(b"SSH-2.0-")
    if socket.has_ipv6:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("::1", platform.ssh_port), timeout=10)
        socket.create_connection(("::1", platform.port), timeout=10).close()  # the gateway is on both loopbacks
    with socket.create_connection(("127.0.0.1", nginx.port), timeout=10) as https:
        https.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        assert not https.recv(64).startswith(b"SSH-")


def test_behind_the_terminator_one_clients_failed_logins_lock_out_no_one_else(behind_tls):
    """The platform counts failed logins per client address: the one nginx names, not nginx's own."""
    platform, nginx, certificate, _ = behind_tls
    public = f"https://localhost:{nginx.port}"
    platform.create_user("noether", password=PASSWORD)
    trusting = ssl.create_default_context(cafile=str(certificate.ca))

    def client(source: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source, verify=trusting)
        return httpx.Client(base_url=public, transport=transport, timeout=30, headers={"Origin": public})

    def log_in(browser: httpx.Client, username: str, password: str) -> httpx.Response:
        token = FORM_TOKEN.search(browser.get("/login/").text).group(1)
        return browser.post("/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": token})

    with client("127.0.0.2") as guesser:
        for attempt in range(30):  # the limit per address; each name once, below the limit per account
            assert log_in(guesser, f"guess-{attempt}", "not the password at all").status_code == 200
        refused = log_in(guesser, "noether", PASSWORD)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    with client("127.0.0.3") as someone_else:
        assert log_in(someone_else, "noether", PASSWORD).status_code == 302
