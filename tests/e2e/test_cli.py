"""The `rosetta` command line against a running platform, as a script would use it."""

import json
import os
import pty
import re
import subprocess
import time

import httpx

from rosetta.tasks.probe import PROBE_PATH
from tests.e2e.test_http_flow import login
from tests.instance import ROSETTA


def test_cli_task_lifecycle(platform):
    token = platform.create_user("barbara")
    assert token.startswith("rst_") and len(token) > 40

    started = platform.rosetta(
        "task",
        "start",
        "hello",
        "--on",
        "local",
        "--name",
        "cli-one",
        "--cpus",
        "0.5",
        "--memory",
        "128M",
        "--wait",
        "--json",
        token=token,
    )
    task = json.loads(started.stdout)
    assert task["phase"] == "running" and task["cpus"] == 0.5 and task["memory_mb"] == 128
    assert task["interface_url"] == f"http://{task['id']}.localhost:{platform.port}/"

    # A script reaches the interface with its token; the gateway puts the task's own secret in
    # its place before forwarding (hello answers nothing else).
    page = httpx.get(task["interface_url"] + "index.html", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200 and "Hello from Rosetta" in page.text

    listing = platform.rosetta("task", "list", token=token).stdout
    assert "cli-one" in listing and "running" in listing and task["interface_url"] in listing
    assert [t["id"] for t in json.loads(platform.rosetta("task", "list", "--json", token=token).stdout)] == [task["id"]]

    shown = platform.rosetta("task", "show", task["id"], token=token).stdout
    assert "phase:     running" in shown and "The interface answers" in shown

    logs = platform.rosetta("task", "logs", task["id"], token=token).stdout
    assert "request /index.html" in logs  # the script's request, as the interface logged it

    assert "Stopping cli-one" in platform.rosetta("task", "stop", task["id"], token=token).stdout
    with platform.api(token) as api:
        platform.wait_for_task(api, task["id"], {"stopped"})
    assert "being deleted" in platform.rosetta("task", "delete", task["id"], token=token).stdout
    assert json.loads(platform.rosetta("task", "list", "--json", token=token).stdout) == []


def test_cli_errors_are_readable(platform):
    token = platform.create_user("frances")
    failed = platform.rosetta("task", "start", "nope", "--on", "local", token=token, check=False)
    assert (
        failed.returncode == 1
        and failed.stderr.strip()
        == "Error: There is no software called 'nope' in your catalogue; choose one of: hello."
    )
    assert "Traceback" not in failed.stderr
    bad_memory = platform.rosetta(
        "task", "start", "hello", "--on", "local", "--memory", "lots", token=token, check=False
    )
    assert bad_memory.returncode == 2 and "is not a memory size" in bad_memory.stderr
    no_token = platform.rosetta("task", "list", check=False)
    assert no_token.returncode == 1 and "ROSETTA_TOKEN" in no_token.stderr
    missing = platform.rosetta("task", "show", "tnothere", token=token, check=False)
    assert missing.returncode == 1 and "There is no task 'tnothere'" in missing.stderr
    nowhere = platform.rosetta("task", "start", "hello", "--on", "mars", token=token, check=False)
    said = nowhere.stderr  # the platform is shared: other tests may have added resources
    assert "no computing resource called 'mars'; choose one of: " in said and "local" in said.split("one of:")[1]
    # A partition or a time limit on a resource without a batch scheduler is refused, not kept unsaid.
    for option in (("--partition", "debug"), ("--time", "2h")):
        batch = platform.rosetta("task", "start", "hello", "--on", "local", *option, token=token, check=False)
        assert batch.returncode == 1 and "local has no batch scheduler" in batch.stderr, batch.stderr
    assert json.loads(platform.rosetta("task", "list", "--json", token=token).stdout) == []
    expired = platform.rosetta("task", "list", token="rst_" + "x" * 43, check=False)
    assert expired.returncode == 1 and "invalid, expired or revoked" in expired.stderr
    assert f"{platform.url}/account/" in expired.stderr and "rosetta login" in expired.stderr


def test_wait_shows_progress_on_a_terminal(platform):
    token = platform.create_user("hedy")
    parent, child = pty.openpty()  # the CLI draws progress only where a person watches
    try:
        result = subprocess.run(
            [*ROSETTA, "task", "start", "hello", "--memory", "0.25G", "--wait"],  # no --on, no --name
            env={**platform.env, "ROSETTA_TOKEN": token},
            stdout=subprocess.PIPE,
            stderr=child,
            text=True,
            timeout=120,
        )
        os.close(child)
        child = None
        shown = b""
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if child is not None:
            os.close(child)
        os.close(parent)
    assert result.returncode == 0 and "phase:     running" in result.stdout
    # The default resource, the software's name, memory as it was written.
    for line in ("resource:  local", "name:      hello", "memory:    256M"):
        assert line in result.stdout.splitlines()
    progress = shown.decode(errors="replace")
    assert "hello: " in progress and " · " in progress and re.search(r"\d:\d\d", progress), progress
    platform.rosetta("task", "delete", "hello", token=token)


def on_terminal(platform, token: str, *args: str, answer: str = "") -> tuple[int, str]:
    """Run `rosetta ARGS` as a person at a terminal (a pty for its input and output), typing
    ``answer``; its exit status and everything the terminal showed."""
    parent, child = pty.openpty()
    try:
        process = subprocess.Popen([*ROSETTA, *args], env={**platform.env, "ROSETTA_TOKEN": token},
                                   stdin=child, stdout=child, stderr=child)  # fmt: skip
        os.close(child)
        child = None
        os.write(parent, answer.encode())
        shown = b""
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # the other end closed: the command is done
                break
            if not chunk:
                break
            shown += chunk
        return process.wait(timeout=60), shown.decode(errors="replace").replace("\r\n", "\n")
    finally:
        if child is not None:
            os.close(child)
        os.close(parent)


def test_stop_and_delete_ask_before_a_scratch_homes_files_are_lost(platform):
    token = platform.create_user("curie")

    def start(name: str, *options: str) -> dict:
        started = platform.rosetta("task", "start", "hello", "--on", "local", "--name", name, "--memory", "128M",
                                   *options, "--wait", "--json", token=token)  # fmt: skip
        return json.loads(started.stdout)

    def write_notes(task: dict) -> None:
        platform.podman("exec", f"rosetta-{task['id']}", "sh", "-c", "echo polonium > /home/rosetta/notes.txt")

    def desired(task: dict) -> str:
        with platform.api(token) as api:
            return api.get(f"/api/tasks/{task['id']}").json()["desired"]

    scratch, spare = start("scratch-notes", "--no-storage"), start("spare-notes", "--no-storage")
    write_notes(scratch)
    write_notes(spare)
    # At a terminal: asked first, naming the files; "no" keeps the task running.
    for command in ("stop", "delete"):
        status, shown = on_terminal(platform, token, "task", command, "scratch-notes", answer="n\n")
        assert status == 1 and "Aborted." in shown, shown
        assert "1 file in this task's home (/home/rosetta) will be lost" in shown and "notes.txt" in shown, shown
        assert f"{command.title()} scratch-notes anyway? [y/N]" in shown, shown
        assert desired(scratch) == "running"
    status, shown = on_terminal(platform, token, "task", "stop", "scratch-notes", answer="y\n")
    assert status == 0 and "Stopping scratch-notes" in shown and desired(scratch) == "stopped", shown
    # --yes asks nothing (the warning is still said).
    status, shown = on_terminal(platform, token, "task", "delete", "-y", "spare-notes")
    assert status == 0 and "anyway?" not in shown and "notes.txt" in shown and "being deleted" in shown, shown
    # A script is not asked: it goes on, and the warning goes to stderr.
    piped = start("piped-notes", "--no-storage")
    write_notes(piped)
    stopped = platform.rosetta("task", "stop", "piped-notes", token=token)
    assert "Stopping piped-notes" in stopped.stdout and "notes.txt" not in stopped.stdout
    assert stopped.stderr.startswith("Warning: 1 file in this task's home") and "notes.txt" in stopped.stderr
    # Nothing to lose, nothing asked: a home that is a storage, and an empty scratch home.
    kept, empty = start("kept-notes"), start("empty-notes", "--no-storage")
    write_notes(kept)
    for task in (kept, empty):
        status, shown = on_terminal(platform, token, "task", "delete", task["name"])
        assert status == 0 and "anyway?" not in shown and "Warning" not in shown, shown


def test_cli_says_what_there_is(platform):
    token = platform.create_user("hopper")
    assert platform.rosetta("--version").stdout.startswith("rosetta ")
    helped = platform.rosetta("--help").stdout
    scientists, operators = helped.index("Commands for scientists"), helped.index("Commands for operators")
    assert scientists < helped.index("  task ") < operators < helped.index("  controller ")
    software = platform.rosetta("software", "list", token=token).stdout
    assert software.splitlines()[0].split()[:4] == ["NAME", "VERSION", "OWNER", "INTERFACE"]
    assert any(line.startswith("hello ") for line in software.splitlines())
    resources = platform.rosetta("resources", "list", token=token).stdout
    assert "local (default)" in resources and "CPU" in resources
    # An operator's look at one resource: text like the list's (JSON on demand), limits in words.
    local = platform.rosetta("resources", "show", "local").stdout
    assert local.startswith("name:        local (default)\nstate:       enabled\n"), local
    assert "\nwhere:       here\n" in local and re.search(
        r"^up to:       \d+ CPU, \d+(\.\d+)?[MG]$", local, re.MULTILINE
    )
    assert "partition" not in local and "time limit" not in local  # nothing batch about it
    assert json.loads(platform.rosetta("resources", "show", "local", "--json").stdout)["name"] == "local"
    # A cluster (added, not reached: nothing connects to it), with partitions as a check would find them.
    platform.rosetta("resources", "add", "cli-cluster", "--ssh", "rosetta@127.0.0.1:1", "--per-user", "--scheduler",
                     "slurm", "--time-limit", "1440", "--partition", "long")  # fmt: skip
    checked = {"partitions": [{"name": "long", "default": False, "max_minutes": 2880, "cpus_per_node": 4,
                               "memory_mb_per_node": 8192, "nodes": 2, "up": True}]}  # fmt: skip
    cluster_row = "from rosetta.computing.models import Resource; cluster = Resource.objects.filter(name='cli-cluster')"
    platform.rosetta("manage", "shell", "-c", f"{cluster_row}; cluster.update(facts={checked!r})")
    cluster = platform.rosetta("resources", "show", "cli-cluster").stdout
    assert "state:       disabled\n" in cluster and "where:       rosetta@127.0.0.1:1\n" in cluster, cluster
    assert "partition:   long\ntime limit:  1 d (when a task names none)\n" in cluster, cluster
    assert "partitions:\n  partition long: up to 2 d, 4 CPUs and 8G per node\n" in cluster, cluster
    platform.rosetta("manage", "shell", "-c", f"{cluster_row}; cluster.delete()")


def test_operator_creates_users_once(platform):
    platform.create_user("dorothy")
    again = platform.rosetta("users", "create", "dorothy", check=False)
    assert again.returncode == 1 and "exists already" in again.stderr


def test_logs_follow_streams_until_the_task_stops(platform):
    token = platform.create_user("ida")
    task = json.loads(
        platform.rosetta("task", "start", "hello", "--on", "local", "--wait", "--json", token=token).stdout
    )
    follower = subprocess.Popen(
        [*ROSETTA, "task", "logs", task["id"], "--follow"],
        env={**platform.env, "ROSETTA_TOKEN": token},
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    for _ in range(3):
        httpx.get(task["interface_url"], headers={"Authorization": f"Bearer {token}"})
    platform.rosetta("task", "stop", task["id"], token=token)
    output, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0
    assert output.count("/ response:200") == 3  # our three requests, as they happened
    assert PROBE_PATH not in output  # the platform's own probe is not the user's business


def test_deleting_a_running_task_stops_it_first(platform):
    token = platform.create_user("sophie")
    task = json.loads(
        platform.rosetta("task", "start", "hello", "--on", "local", "--wait", "--json", token=token).stdout
    )
    assert f"rosetta-{task['id']}" in platform.containers()
    platform.rosetta("task", "delete", task["id"], token=token)
    with platform.api(token) as api:
        for _ in range(600):  # stop, then delete: seconds, more on a busy machine
            if api.get(f"/api/tasks/{task['id']}").status_code == 404:
                break
            time.sleep(0.05)
        assert api.get(f"/api/tasks/{task['id']}").status_code == 404
    assert f"rosetta-{task['id']}" not in platform.containers()


def test_a_failed_task_says_why_and_relaunches_by_name(platform):
    token = platform.create_user("rosalind")
    image = platform.build_image(
        "localhost/rosetta-test/exit3-cli",
        'FROM localhost/rosetta/hello\nCMD ["/bin/sh", "-c", "echo computing; sleep 0.5; exit 3"]\n',
    )
    with platform.api(token) as api:
        assert api.post("/api/software", json={"name": "exit3-cli", "image": image}).status_code == 201
    start = ("task", "start", "exit3-cli", "--on", "local", "--name", "crunch", "--memory", "192M", "--env", "A=1")
    failed = platform.rosetta(*start, "--wait", token=token, check=False)
    # A non-zero exit is a failure, said as such, with what to do about it.
    assert failed.returncode == 1, failed.stderr
    assert "phase:     exited (3)" in failed.stdout and "memory:    192M" in failed.stdout
    assert "why:       The program exited with code 3." in failed.stdout
    assert "rosetta task relaunch crunch" in failed.stdout
    first = json.loads(platform.rosetta("task", "show", "crunch", "--json", token=token).stdout)
    assert first["outcome"] == "failed" and first["exit_code"] == 3

    # Relaunch by name: the same request again, under the same name; the first run is kept.
    again = json.loads(platform.rosetta("task", "relaunch", "crunch", "--json", token=token).stdout)
    assert again["id"] != first["id"] and again["name"] == "crunch"
    assert (again["software"], again["resource"], again["memory_mb"], again["environment"]) == (
        "exit3-cli",
        "local",
        192,
        {"A": "1"},
    )
    # Following its logs waits for output instead of returning at once.
    logs = platform.rosetta("task", "logs", "crunch", "--follow", token=token)
    assert logs.stdout == "computing\n"
    with platform.api(token) as api:
        platform.wait_for_task(api, again["id"], {"exited", "failed"})  # the controller records the end
    shown = json.loads(platform.rosetta("task", "show", "crunch", "--json", token=token).stdout)
    assert shown["id"] == again["id"] and shown["phase"] == "exited"
    both = json.loads(platform.rosetta("task", "list", "--all", "--json", token=token).stdout)
    assert [t["id"] for t in both] == [again["id"], first["id"]]
    assert json.loads(platform.rosetta("task", "list", "--json", token=token).stdout) == []  # active only
    # A running task cannot be relaunched; a finished one's name is free for a new task.
    platform.rosetta("task", "start", "hello", "--name", "crunch", "--on", "local", token=token)
    busy = platform.rosetta("task", "relaunch", "crunch", token=token, check=False)
    assert busy.returncode == 1 and "is still" in busy.stderr and "stop it" in busy.stderr
    platform.rosetta("task", "delete", "crunch", token=token)


def test_operators_run_users_from_the_shell(platform):
    token = platform.create_user("lovelace")
    staff = platform.create_user("lovelace-ops", admin=True)
    listed = platform.rosetta("users", "list").stdout
    assert any(line.split()[:3] == ["lovelace", "user", "active"] for line in listed.splitlines())
    running = json.loads(
        platform.rosetta("task", "start", "hello", "--on", "local", "--wait", "--json", token=token).stdout
    )
    assert running["phase"] == "running"

    # Deactivating stops the account's tasks, with the reason on each, and says so.
    said = platform.rosetta("users", "deactivate", "lovelace").stdout
    assert "lovelace was deactivated" in said and "their 1 active task is being stopped" in said
    assert "Their API tokens never work again: reactivated, they make new ones." in said
    # Its token's holder is told the account is deactivated; any other token is still just invalid.
    refused = platform.rosetta("task", "list", token=token, check=False)
    assert refused.returncode == 1 and "This account is deactivated" in refused.stderr
    assert "invalid" not in refused.stderr
    unknown_token = platform.rosetta("task", "list", token="rst_" + "x" * 43, check=False)
    assert unknown_token.returncode == 1 and "invalid, expired or revoked" in unknown_token.stderr
    assert "deactivated" not in unknown_token.stderr
    with platform.api(staff) as api:
        stopped = platform.wait_for_task(api, running["id"], {"stopped"}, timeout=60)
    assert "Stopped because the account was deactivated by staff." in [e["reason"] for e in stopped["events"]]

    # Reactivated, the account has none of its old tokens: the one refused stays refused, for good.
    said = platform.rosetta("users", "reactivate", "lovelace").stdout
    assert "lovelace was reactivated (their 1 old API token was revoked)" in said, said
    assert "rosetta users set-password lovelace" in said and "Their SSH keys are kept." in said  # no password yet
    revoked = platform.rosetta("task", "list", token=token, check=False)
    assert revoked.returncode == 1 and "invalid, expired or revoked" in revoked.stderr
    assert "is active already" in platform.rosetta("users", "reactivate", "lovelace").stdout
    password = platform.rosetta("users", "set-password", "lovelace").stdout.strip()
    assert len(password) >= 12 and not set(password) & set("0Oo1lI")  # typed by a person: no look-alikes
    browser = login(platform, "lovelace", password)  # the web login takes the new password
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get("/account/").text).group(1)
    made = browser.post(
        "/api/tokens", json={"name": "after"}, headers={"X-CSRFToken": csrf, "Referer": platform.url + "/"}
    )
    browser.close()
    assert made.status_code == 201, made.text
    fresh = made.json()["token"]
    task = json.loads(
        platform.rosetta("task", "start", "hello", "--on", "local", "--wait", "--json", token=fresh).stdout
    )
    # The gateway too: the new token opens the task's interface, the old one nothing.
    with platform.task_client(task["id"], fresh) as interface:
        assert interface.get("/index.html").status_code == 200
    with platform.task_client(task["id"], token) as interface:
        assert interface.get("/index.html").status_code == 401
    assert "their 1 active task is being stopped" in platform.rosetta("users", "deactivate", "lovelace").stdout
    assert "they had no active task" in platform.rosetta("users", "deactivate", "lovelace").stdout
    assert "old API token was revoked" in platform.rosetta("users", "reactivate", "lovelace").stdout
    unknown = platform.rosetta("users", "deactivate", "nobody", check=False)
    assert unknown.returncode == 1 and "no user called 'nobody'" in unknown.stderr
