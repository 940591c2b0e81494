"""A scientist's whole round trip over HTTP only, against a real `rosetta run` and podman."""

import re

import httpx

from rosetta.tasks.probe import PROBE_PATH

HELLO = "Hello from Rosetta"


def login(platform, username: str, password: str) -> httpx.Client:
    browser = httpx.Client(base_url=platform.url, timeout=30, follow_redirects=False)
    page = browser.get("/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = browser.post(
        "/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{platform.url}/login/"},
    )
    assert response.status_code == 302, response.text
    return browser


def test_start_open_refuse_logs_stop(platform):
    platform.create_user("ada", password="correct horse battery")
    token = platform.create_user("ada-script")  # a second account, to prove isolation
    browser = login(platform, "ada", "correct horse battery")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get("/tasks/new/").text).group(1)

    # Start `hello` through the API with the browser session (as the web UI's scripts do).
    response = browser.post(
        "/api/tasks",
        json={"software": "hello", "resource": "local", "name": "first"},
        headers={"X-CSRFToken": csrf, "Referer": platform.url + "/"},
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["phase"] == "created"
    assert task["interface_url"] == f"http://{task['id']}.localhost:{platform.port}/"

    # Wait for running; the events tell the way it went.
    current = platform.wait_for_task(browser, task["id"], {"running", "exited", "failed"})
    assert current["phase"] == "running", current
    assert [event["phase"] for event in current["events"]] == ["created", "created", "starting", "running"]

    # Open it through the gateway as a browser does: the platform hands a one-time token over
    # in a form (never in a URL); the gateway turns it into a cookie for the task's origin.
    open_page = browser.get(f"/tasks/{task['id']}/open")
    assert open_page.status_code == 200
    form_action = re.search(r'<form[^>]+action="([^"]+)"', open_page.text).group(1)
    one_time = re.search(r'name="token" value="([^"]+)"', open_page.text).group(1)
    assert one_time not in form_action
    origin = httpx.Client(base_url=task["interface_url"], timeout=30)
    # The form comes from the platform's page: the browser says so in Origin.
    hand_over = {"Origin": platform.url}
    redirect = origin.post("/.rosetta/login", data={"token": one_time, "next": "/"}, headers=hand_over)
    assert redirect.status_code == 303 and redirect.headers["location"] == "/"
    page = origin.get("/")
    assert page.status_code == 200 and HELLO in page.text
    # The one-time token cannot be used twice.
    replay = httpx.post(f"{task['interface_url']}.rosetta/login", data={"token": one_time}, headers=hand_over)
    assert replay.status_code == 403

    # The other user is refused at the gateway, with their valid token or without any.
    assert platform.task_client(task["id"], token).get("/").status_code == 403
    assert httpx.get(task["interface_url"], headers={"Accept": "application/json"}).status_code == 401
    # ... and cannot even see the task in the API.
    with platform.api(token) as other:
        assert other.get(f"/api/tasks/{task['id']}").status_code == 404
        assert other.post(f"/api/tasks/{task['id']}/stop").status_code == 404

    # Logs show the requests the interface served, one access-log line each: the one made
    # above, and not the platform's own probe of the interface.
    logs = browser.get(f"/api/tasks/{task['id']}/logs")
    assert logs.status_code == 200
    assert logs.text.count("/ response:200") == 1 and PROBE_PATH not in logs.text, logs.text

    # Stop: the container goes, the task says why.
    assert browser.post(f"/api/tasks/{task['id']}/stop", headers={"X-CSRFToken": csrf}).status_code == 202
    stopped = platform.wait_for_task(browser, task["id"], {"stopped"})
    assert f"rosetta-{task['id']}" not in platform.containers()
    assert stopped["events"][-1]["reason"].startswith("The container was stopped")
    kept = browser.get(f"/api/tasks/{task['id']}/logs").text  # the tail kept when the container went
    assert kept.count("/ response:200") == 1 and PROBE_PATH not in kept, kept
    # The gateway now serves a clear page instead of the app.
    after = origin.get("/")
    assert after.status_code == 503 and "stopped" in after.text
