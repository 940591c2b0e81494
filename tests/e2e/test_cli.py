"""The `rosetta` command line against a running platform, as a script would use it."""

import json
import subprocess
import time

import httpx

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

    # A script reaches the interface with its token; the gateway strips it before forwarding.
    page = httpx.get(task["interface_url"] + "cgi-bin/env", headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 200
    assert "HTTP_AUTHORIZATION" not in page.text and token not in page.text

    listing = platform.rosetta("task", "list", token=token).stdout
    assert "cli-one" in listing and "running" in listing and task["interface_url"] in listing
    assert [t["id"] for t in json.loads(platform.rosetta("task", "list", "--json", token=token).stdout)] == [task["id"]]

    shown = platform.rosetta("task", "show", task["id"], token=token).stdout
    assert "phase:     running" in shown and "The interface answers" in shown

    logs = platform.rosetta("task", "logs", task["id"], token=token).stdout
    assert "response:200" in logs

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
        and failed.stderr.strip() == "Error: There is no software called 'nope' in your catalogue."
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
    assert output.count("response:200") >= 4  # the controller's probe and our three requests, as they happened


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
