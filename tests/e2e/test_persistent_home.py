"""A group's daily work survives the task: the user's home storage is the task's home by default,
so a notebook saved and a package installed with `%pip install` are still there after Stop and
Relaunch; the kernel and JupyterLab's terminal share one Python. Where the home is scratch space,
the platform says so, and Stop asks first when files there would be lost."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import time
import uuid
import zipfile

import pytest
import websockets.sync.client

from tests.e2e.test_browser import CHROMIUM, FLAGS
from tests.e2e.test_environments import execute
from tests.instance import Platform

pytestmark = pytest.mark.podman

WHEEL = "tinypkg-0.1-py3-none-any.whl"
GREETING = "hello from tinypkg"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A Rosetta with JupyterLab and hello in its catalogue, the demo's storages registered."""
    instance = Platform(
        tmp_path_factory.mktemp("rosetta-home"),
        settings={"ROSETTA_DEMO_SOFTWARE": "jupyterlab,hello", "ROSETTA_REGISTRY_LISTEN": "off"},
    )
    instance.set_up()
    instance.start()
    yield instance
    instance.stop()


def tiny_wheel() -> bytes:
    """A pure-Python wheel made by hand (a zip with its metadata and RECORD): no build tool, no network."""
    files = {
        "tinypkg/__init__.py": f"GREETING = {GREETING!r}\n".encode(),
        "tinypkg-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 0.1\n",
        "tinypkg-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    lines = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    files["tinypkg-0.1.dist-info/RECORD"] = ("\n".join([*lines, "tinypkg-0.1.dist-info/RECORD,,"]) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return out.getvalue()


def in_terminal(platform: Platform, task_id: str, token: str, command: str, timeout: float = 60) -> str:
    """Type ``command`` into a new JupyterLab terminal (a login shell, as a person gets one) and
    return what it printed up to a marker echoed after it."""
    jupyter = platform.task_client(task_id, token)
    created = jupyter.post("/api/terminals")
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    marker = uuid.uuid4().hex
    output = ""
    with websockets.sync.client.connect(
        f"ws://{task_id}.localhost:{platform.port}/terminals/websocket/{name}",
        additional_headers={"Authorization": f"Bearer {token}"},
    ) as terminal:
        # The marker is printed split in two, so its echo of the typed line does not end the read.
        terminal.send(json.dumps(["stdin", f"{command}; echo {marker[:8]}''{marker[8:]}\r"]))
        deadline = time.monotonic() + timeout
        while marker not in output:
            message = json.loads(terminal.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message[0] == "stdout":
                output += message[1]
    jupyter.delete(f"/api/terminals/{name}")
    return output


def run_in_kernel(platform: Platform, task_id: str, token: str, code: str) -> str:
    jupyter = platform.task_client(task_id, token)
    started = jupyter.post("/api/kernels", json={"name": "python3"})
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    try:
        with websockets.sync.client.connect(
            f"ws://{task_id}.localhost:{platform.port}/api/kernels/{kernel}/channels",
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=None,
        ) as channels:
            printed, _ = execute(channels, code, timeout=180)
    finally:
        jupyter.delete(f"/api/kernels/{kernel}")
    return printed


NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "id": "c1", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import tinypkg, astropy\nprint(tinypkg.GREETING)"},
    ],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip


def test_a_notebook_and_a_pip_install_survive_stop_and_relaunch(lab):
    platform = lab
    token = platform.create_user("noether")
    api = platform.api(token)
    # The wheel reaches the user's home storage through the file manager.
    assert api.post("/api/storages/home/folders", json={"path": "wheels"}).status_code == 201
    put = api.put("/api/storages/home/content", params={"path": f"wheels/{WHEEL}"}, content=tiny_wheel())
    assert put.status_code == 201, put.text

    # Started with the defaults: the home storage is the task's home.
    started = platform.rosetta(
        "task", "start", "jupyterlab", "--on", "local", "--name", "thesis", "--wait", "--json", token=token
    )
    task = json.loads(started.stdout)
    assert task["phase"] == "running", task["events"]
    assert task["mounts"] == [{"storage": "home", "target": "/home/rosetta", "read_only": False}]
    assert task["home_storage"] == "home" and task["kept"].startswith("Kept: your home /home/rosetta (storage home)")
    shown = platform.rosetta("task", "show", "thesis", token=token).stdout
    assert "storages:  home at /home/rosetta" in shown and "kept:      Kept: your home /home/rosetta" in shown

    # A notebook saved in JupyterLab...
    jupyter = platform.task_client(task["id"], token)
    saved = jupyter.put("/api/contents/analysis.ipynb", json={"type": "notebook", "format": "json",
                                                             "content": NOTEBOOK})  # fmt: skip
    assert saved.status_code in (200, 201), saved.text
    # ... and a package installed from a notebook's kernel, into the user's site in the home.
    printed = run_in_kernel(
        platform, task["id"], token,
        "%pip install --no-index --find-links ~/wheels tinypkg\nimport tinypkg\nprint('imported:', tinypkg.GREETING)",
    )  # fmt: skip
    assert "Successfully installed tinypkg-0.1" in printed and f"imported: {GREETING}" in printed, printed
    # The terminal has the kernel's Python (astropy included), and sees the package too.
    said = in_terminal(platform, task["id"], token, "command -v python3 pip jupyter; "
                       "python3 -c 'import tinypkg, astropy; print(\"terminal:\", tinypkg.GREETING)'")  # fmt: skip
    assert f"terminal: {GREETING}" in said, said
    assert "/opt/jupyter/bin/python3" in said and "/opt/jupyter/bin/pip" in said and "/opt/jupyter/bin/jupyter" in said
    # What the task wrote is in the file manager, the task user's own (writable again from the browser).
    names = {entry["name"] for entry in api.get("/api/storages/home/entries").json()["entries"]}
    assert {"analysis.ipynb", "wheels", ".local"} <= names, names
    assert api.get("/api/storages/home/content", params={"path": "analysis.ipynb"}).json()["nbformat"] == 4
    user_site = api.get("/api/storages/home/entries", params={"path": ".local/lib/python3.11/site-packages"})
    assert "tinypkg" in {entry["name"] for entry in user_site.json()["entries"]}

    # Stop, then Relaunch: a new container, the same home.
    platform.rosetta("task", "stop", "thesis", token=token)
    platform.wait_for_task(api, task["id"], {"stopped", "exited"}, timeout=90)
    again = json.loads(platform.rosetta("task", "relaunch", "thesis", "--wait", "--json", token=token).stdout)
    assert again["id"] != task["id"] and again["phase"] == "running", again["events"]
    assert again["home_storage"] == "home"
    kept = platform.task_client(again["id"], token).get("/api/contents/analysis.ipynb")
    assert kept.status_code == 200 and kept.json()["content"]["cells"][0]["source"] == NOTEBOOK["cells"][0]["source"]
    printed = run_in_kernel(platform, again["id"], token, "import tinypkg\nprint('still:', tinypkg.GREETING)")
    assert f"still: {GREETING}" in printed
    platform.rosetta("task", "delete", "thesis", token=token)


def test_mount_points_chosen_per_task_and_clashes_refused(lab, tmp_path):
    platform = lab
    token = platform.create_user("meitner")
    api = platform.api(token)
    staff = platform.api(platform.create_user("staff-home", admin=True))

    # The home storage elsewhere: the task's home is then scratch, and the CLI says so.
    shown = platform.rosetta("task", "start", "hello", "--on", "local", "--name", "elsewhere", "--memory", "128M",
                             "--storage", "home:/data", "--json", token=token).stdout  # fmt: skip
    task = json.loads(shown)
    assert task["mounts"] == [{"storage": "home", "target": "/data", "read_only": False}]
    assert task["home_storage"] is None and "scratch space" in task["kept"] and "Kept: home at /data." in task["kept"]
    # Relaunch asks for the same mount point again.
    platform.wait_for_task(api, task["id"], {"running"}, timeout=120)
    platform.rosetta("task", "stop", "elsewhere", token=token)
    platform.wait_for_task(api, task["id"], {"stopped", "exited"}, timeout=60)
    again = json.loads(platform.rosetta("task", "relaunch", "elsewhere", "--json", token=token).stdout)
    assert again["mounts"] == [{"storage": "home", "target": "/data", "read_only": False}]
    api.delete(f"/api/tasks/{again['id']}")

    # --no-storage: nothing mounted, the home is scratch, and `task show` says it plainly.
    bare = json.loads(platform.rosetta("task", "start", "hello", "--on", "local", "--name", "bare", "--memory", "128M",
                                       "--no-storage", "--json", token=token).stdout)  # fmt: skip
    assert bare["mounts"] == [] and bare["home_storage"] is None
    said = platform.rosetta("task", "show", "bare", token=token).stdout
    assert "storages:  none" in said and "kept:      Your home /home/rosetta is scratch space" in said
    api.delete(f"/api/tasks/{bare['id']}")
    both = platform.rosetta("task", "start", "hello", "--storage", "home", "--no-storage", token=token, check=False)
    assert both.returncode == 2 and "not both" in both.stderr

    # Two storages at one mount point are refused, whichever way they get there; so is a bad mount point.
    shared = tmp_path / "team"
    shared.mkdir()
    added = staff.post("/api/storages", json={"name": "team", "base_path": str(shared), "mount_point": "/home/rosetta",
                                              "mountable_on": ["local"], "mounted_by_default": False})  # fmt: skip
    assert added.status_code == 201, added.text
    read_only = staff.post("/api/storages", json={"name": "archive", "base_path": str(shared), "read_only": True,
                                                  "mountable_on": ["local"], "mounted_by_default": False})  # fmt: skip
    assert read_only.status_code == 201, read_only.text
    try:
        for storages, words in (
            (["home", "team"], "Storages home and team would both be mounted at /home/rosetta"),
            (["home:/data", "team:/data"], "would both be mounted at /data"),
            (["archive:/home/rosetta"], "read-only, so it cannot be the home"),
            (["home:data"], "must be an absolute path"),
            (["home:/data/../etc"], "must be a plain path"),
            (["home:/proc/x"], "the container's own"),
        ):
            refused = api.post("/api/tasks", json={"software": "hello", "resource": "local", "storages": storages})
            assert refused.status_code == 400 and words in refused.json()["detail"], (storages, refused.text)
        cli = platform.rosetta("task", "start", "hello", "--storage", "home", "--storage", "team", token=token,
                               check=False)  # fmt: skip
        assert cli.returncode == 1 and "would both be mounted at /home/rosetta" in cli.stderr
        assert "Traceback" not in cli.stderr
        # An operator's own mount point is checked the same way.
        bad = staff.post("/api/storages", json={"name": "bad", "base_path": str(shared), "mount_point": "/a,b"})
        assert bad.status_code == 400 and "comma" in bad.json()["detail"]
        refused_made = [t for t in platform.list_tasks(api) if t["name"].startswith("hello")]
        assert not refused_made  # a refused request leaves no task behind
    finally:
        staff.delete("/api/storages/team")
        staff.delete("/api/storages/archive")


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is installed by scripts/setup.sh --for-tests")
def test_stop_warns_when_a_scratch_home_holds_files_and_not_otherwise(lab):
    from playwright.sync_api import expect, sync_playwright

    platform = lab
    token = platform.create_user("franklin", password="double helix photograph")
    api = platform.api(token)
    scratch = json.loads(
        platform.rosetta(
            "task",
            "start",
            "hello",
            "--on",
            "local",
            "--name",
            "scratchy",
            "--memory",
            "128M",
            "--no-storage",
            "--wait",
            "--json",
            token=token,
        ).stdout
    )
    kept = json.loads(platform.rosetta("task", "start", "hello", "--on", "local", "--name", "kept",
                                       "--memory", "128M", "--wait", "--json", token=token).stdout)  # fmt: skip
    assert kept["home_storage"] == "home"

    # Nothing there yet: nothing to warn about.
    empty = api.get(f"/api/tasks/{scratch['id']}/scratch").json()
    assert empty == {"home": "/home/rosetta", "home_storage": None, "checked": True, "files": 0, "more": False,
                     "names": [], "warning": ""}  # fmt: skip
    wrote = subprocess.run(["podman", "exec", f"rosetta-{scratch['id']}", "sh", "-c",
                            "mkdir -p /home/rosetta/run1 /home/rosetta/.cache && echo x > /home/rosetta/run1/fit.dat"
                            " && echo y > /home/rosetta/.cache/c && echo z > /home/rosetta/notes.txt"],
                           env=platform.podman_env, capture_output=True, text=True)  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    found = api.get(f"/api/tasks/{scratch['id']}/scratch").json()
    assert found["checked"] and found["files"] == 2 and sorted(found["names"]) == ["notes.txt", "run1/fit.dat"]
    assert "2 files in this task's home (/home/rosetta) will be lost" in found["warning"]
    # A home that is a storage loses nothing; another user's task is not found.
    assert api.get(f"/api/tasks/{kept['id']}/scratch").json()["home_storage"] == "home"
    other = platform.api(platform.create_user("wilkins"))
    assert other.get(f"/api/tasks/{scratch['id']}/scratch").status_code == 404

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_context().new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{platform.url}/login/")
        page.get_by_label("Username").fill("franklin")
        page.get_by_label("Password").fill("double helix photograph")
        page.get_by_role("button", name="Log in").click()

        # The form: the home storage ticked, the home said to be kept; unticked, said to be scratch.
        page.goto(f"{platform.url}/tasks/new/?software=hello")
        home_box = page.get_by_role("checkbox", name="home at /home/rosetta (your home, kept)")
        expect(home_box).to_be_checked()
        note = page.locator("[data-home-note]")
        expect(note).to_have_text("Your home (/home/rosetta) is storage home: kept when the task ends.")
        expect(page.locator(".field:has([name=storages]) .help")).to_contain_text("Not kept: everything else")
        home_box.uncheck()
        expect(note).to_contain_text("Your home (/home/rosetta) is scratch space: it is lost when the task ends.")

        # The task page says the home is scratch; Stop names what would be lost, and Cancel keeps it running.
        page.goto(f"{platform.url}/tasks/{scratch['id']}/")
        expect(page.locator("[data-scratch-notice]")).to_contain_text("Your home /home/rosetta is scratch space")
        expect(page.locator("[data-field=kept]")).to_contain_text("Nothing is kept")
        dialogs, answers = [], []  # what each dialog said; whether to accept the next ones

        def answer(dialog):
            dialogs.append(dialog.message)
            dialog.accept() if answers.pop(0) else dialog.dismiss()

        def dialog_count(count: int) -> None:
            deadline = time.monotonic() + 10
            while len(dialogs) < count and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert len(dialogs) == count, dialogs

        page.on("dialog", answer)
        answers.append(False)
        page.get_by_role("button", name="Stop").click()
        dialog_count(1)
        assert "notes.txt" in dialogs[0] and "run1/fit.dat" in dialogs[0] and "Stop the task anyway?" in dialogs[0]
        assert ".cache" not in dialogs[0]  # settings and caches are not what a person means to keep
        page.wait_for_timeout(500)
        assert api.get(f"/api/tasks/{scratch['id']}").json()["desired"] == "running"

        # The kept task's page says what is kept, and its Stop asks nothing.
        page.goto(f"{platform.url}/tasks/{kept['id']}/")
        expect(page.locator("[data-field=kept]")).to_contain_text("Kept: your home /home/rosetta (storage home)")
        expect(page.locator("[data-scratch-notice]")).to_have_count(0)
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("[data-field=phase]")).to_have_text(re.compile("stopping|stopped"), timeout=30_000)
        assert len(dialogs) == 1

        # From the list, the scratch task's Stop asks too; accepted, it stops.
        page.goto(f"{platform.url}/tasks/")
        answers.append(True)
        page.locator(f"tr[data-task-id={scratch['id']}]").get_by_role("button", name="Stop").click()
        dialog_count(2)
        assert "2 files in this task's home" in dialogs[1]
        platform.wait_for_task(api, scratch["id"], {"stopped", "exited"}, timeout=60)
        browser.close()
    for task in (scratch, kept):
        api.delete(f"/api/tasks/{task['id']}")
