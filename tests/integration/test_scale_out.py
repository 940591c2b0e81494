"""Two machines sharing one PostgreSQL (tests/machines.py): each machine's local resource is
its own; a remote backend (the test bed's SSH host with podman) has one active controller, and
another machine's takes it over when that one dies; a gateway on each machine serves every task."""

import signal
import time
from datetime import UTC, datetime

import pytest

from rosetta.gateway.access import access_key, mint_access_token
from tests.machines import (
    REMOTE,
    postgres,
    psql,
    remote_lock_key,
    start,
    start_both,
    stop_both,
    two_machines,
    wait_for_holder,
)


@pytest.fixture(scope="module")
def postgres_url():
    with postgres() as url:
        yield url


@pytest.fixture(scope="module")
def machines(tmp_path_factory, postgres_url):
    """Machines a and b, up, and a user's API token."""
    a, b = two_machines((tmp_path_factory.mktemp("machine-a"), tmp_path_factory.mktemp("machine-b")), postgres_url)
    token = None
    try:
        start_both(a, b)
        token = a.create_user("grace")
        yield a, b, token
    finally:
        if token is None:
            b.stop()
            a.stop()
        else:
            stop_both(a, b, token)


def test_each_machine_has_its_own_local_resource(machines):
    a, b, token = machines
    with a.api(token) as api:
        resources = {resource["name"] for resource in api.get("/api/resources").json()}
    assert {"local", "local-machine-b"} <= resources
    assert (
        "machine:     machine-b (its controller alone runs these tasks)"
        in a.rosetta("resources", "show", "local-machine-b").stdout.splitlines()
    )


def test_no_task_of_one_machine_is_touched_by_the_other(machines):
    a, b, token = machines
    since = datetime.now(UTC).isoformat()
    with a.api(token) as api:
        on_a = start(api, "local", "on-a")
        on_b = start(api, "local-machine-b", "on-b")
        for task_id in (on_a, on_b):
            a.wait_for_task(api, task_id, {"running"})
        time.sleep(5)  # many passes of both controllers (each polls every second)
        for task_id in (on_a, on_b):
            task = api.get(f"/api/tasks/{task_id}").json()
            assert task["phase"] == "running", task
            assert not any("gone" in event["reason"] for event in task["events"]), task["events"]
        # The gateway on each machine serves every task.
        for machine in (a, b):
            for task_id in (on_a, on_b):
                assert "Hello from Rosetta" in machine.task_client(task_id, token).get("/").text
        # One engine plays both machines' here: each task's container was made once, none removed.
        created = a.containers_created_since(since)
        assert created.get(on_a) == 1 and created.get(on_b) == 1, created
        assert {f"rosetta-{on_a}", f"rosetta-{on_b}"} <= set(a.containers()), a.containers()
        for task_id in (on_a, on_b):
            assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
        for task_id in (on_a, on_b):
            a.wait_for_task(api, task_id, {"stopped"})


def test_a_one_time_token_opens_once_whichever_machine_gets_it(machines, postgres_url):
    a, b, token = machines
    [[user_id]] = psql(postgres_url, "select id from auth_user where username = 'grace'")
    with a.api(token) as api:
        task_id = start(api, "local", "token-once")
        a.wait_for_task(api, task_id, {"running"})
        one_time = mint_access_token(access_key(a.env["ROSETTA_SECRET_KEY"]), int(user_id), task_id, epoch=0)
        answers = [
            machine.task_client(task_id).post(
                "/.rosetta/login", data={"token": one_time, "next": "/"}, headers={"Origin": machine.url}
            )
            for machine in (a, b)
        ]
        assert answers[0].status_code == 303, answers[0].text
        assert answers[1].status_code == 403 and "already used" in answers[1].text, answers[1].text
        assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
        a.wait_for_task(api, task_id, {"stopped"})


def test_access_taken_away_on_one_machine_is_known_at_once_to_the_others(machines, postgres_url):
    """Machine b's operator deactivates a user: machine a's gateway refuses her cookie from the
    next request on (it hears of it through PostgreSQL, not at its next reload, 5 s apart)."""
    a, b, _ = machines
    token = a.create_user("ada")
    [[user_id]] = psql(postgres_url, "select id from auth_user where username = 'ada'")
    with a.api(token) as api:
        task_id = start(api, "local", "ada-task")
        a.wait_for_task(api, task_id, {"running"})
    one_time = mint_access_token(access_key(a.env["ROSETTA_SECRET_KEY"]), int(user_id), task_id, epoch=0)
    with a.task_client(task_id) as browser:
        login = browser.post("/.rosetta/login", data={"token": one_time, "next": "/"}, headers={"Origin": a.url})
        assert login.status_code == 303, login.text
        assert "Hello from Rosetta" in browser.get("/").text
        b.rosetta("users", "deactivate", "ada")
        refused = browser.get("/")
    assert refused.status_code != 200 and "Hello from Rosetta" not in refused.text, refused.status_code


def test_a_remote_backend_has_one_active_controller_and_moves_on_when_it_dies(machines, postgres_url):
    a, b, token = machines
    key = remote_lock_key(postgres_url)
    holders = wait_for_holder(postgres_url, key, timeout=10)
    assert len(holders) == 1, holders  # exactly one active worker for the backend, across machines
    holder = a if "machine-a" in holders[0] else b
    other = b if holder is a else a
    with a.api(token) as api:
        remote = start(api, REMOTE, "remote")
        a.wait_for_task(api, remote, {"running"}, timeout=90)
        local_of_holder = start(api, "local" if holder is a else "local-machine-b", "holder-local")
        a.wait_for_task(api, local_of_holder, {"running"})
        for machine in (a, b):
            assert "Hello from Rosetta" in machine.task_client(remote, token).get("/").text

        killed = time.monotonic()
        holder.kill("controller", signal.SIGKILL)
        holders = wait_for_holder(postgres_url, key, timeout=5, unlike=holders[0])
        took = time.monotonic() - killed
        assert len(holders) == 1 and other.env["ROSETTA_NODE"] in holders[0], holders
        assert took < 5, took
        print(f"the remote backend moved to {holders[0]} {took:.2f} s after its controller was killed")

        # The survivor does the remote work now: a stop is carried out without the dead controller.
        assert api.post(f"/api/tasks/{remote}/stop").status_code == 202
        a.wait_for_task(api, remote, {"stopped"}, timeout=30)
        # ... and leaves the dead controller's machine's own task alone.
        time.sleep(3)
        task = api.get(f"/api/tasks/{local_of_holder}").json()
        assert task["phase"] == "running", task
        assert "Hello from Rosetta" in holder.task_client(local_of_holder, token).get("/").text
