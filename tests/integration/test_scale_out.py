"""Two machines sharing one PostgreSQL: played here by two homes (ROSETTA_HOME) with machine
names of their own (ROSETTA_NODE), the same secret key, and their own web, gateway and
controller. Each machine's local resource is its own; a remote backend (the test bed's SSH
host with podman) has one active controller, and another takes it over when that one dies."""

import json
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rosetta.tasks.leadership import lock_key
from tests.instance import Platform, free_port

POSTGRES = Path(__file__).resolve().parents[2] / "testbed" / "postgres.sh"
TESTBED = Path("/var/lib/rosetta-testbed")
REMOTE = "testbed-host"
WEB_TIER = ("web", "controller", "gateway")  # what every machine runs; the registry runs on the first


@pytest.fixture(scope="module")
def postgres_url():
    directory = tempfile.mkdtemp(prefix="rosetta-pg-")  # under /tmp: the postgres user must reach it
    url = subprocess.run([str(POSTGRES), directory, str(free_port())], capture_output=True, text=True, check=True)
    yield url.stdout.strip()
    subprocess.run([str(POSTGRES), "--stop", directory], check=False)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def machines(tmp_path_factory, postgres_url):
    """Machines a and b, up, and a user's API token."""
    described = json.loads((TESTBED / "testbed.json").read_text())
    shared = {
        "ROSETTA_DATABASE_URL": postgres_url,
        "ROSETTA_SECRET_KEY": secrets.token_urlsafe(50),
        "ROSETTA_TESTBED_DIR": str(TESTBED),
        # The registry runs on machine a; resources pull from it whichever machine asks.
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    }
    a = Platform(tmp_path_factory.mktemp("machine-a"), settings={**shared, "ROSETTA_NODE": "machine-a"})
    b = Platform(tmp_path_factory.mktemp("machine-b"), settings={**shared, "ROSETTA_NODE": "machine-b"})
    try:
        a.set_up()
        a.start(separately=True)
        b.set_up()
        for name in WEB_TIER:
            b.start_component(name)
        b.wait_until_up()
        token = a.create_user("grace")
        yield a, b, token
    finally:
        for machine in (a, b):
            if "controller" not in machine.processes:
                machine.start_component("controller")  # its tasks are stopped below, by their own machine
        with a.api(token) as api:
            for task in api.get("/api/tasks").json():
                api.post(f"/api/tasks/{task['id']}/stop")
            for task in api.get("/api/tasks").json():
                a.wait_for_task(api, task["id"], {"stopped", "exited", "failed"}, timeout=60)
        b.stop()
        a.stop()


def test_each_machine_has_its_own_local_resource(machines):
    a, b, token = machines
    with a.api(token) as api:
        resources = {resource["name"] for resource in api.get("/api/resources").json()}
    assert {"local", "local-machine-b"} <= resources


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
            assert not any("gone" in event["reason"] for event in events(api, task_id)), events(api, task_id)
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


# -- helpers ------------------------------------------------------------------------------------


def start(api, resource: str, name: str) -> str:
    response = api.post("/api/tasks", json={"software": "hello", "resource": resource, "name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def events(api, task_id: str) -> list[dict]:
    return api.get(f"/api/tasks/{task_id}").json()["events"]


def psql(url: str, query: str) -> list[list[str]]:
    out = subprocess.run(["psql", url, "-AtF", "\t", "-c", query], capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def remote_lock_key(url: str) -> int:
    """The remote backend's lock number, computed as the controllers compute it."""
    host_keys = "encode(convert_to(host_keys, 'UTF8'), 'hex')"  # one line, whatever the keys hold
    fields = f"transport, host, port, username, {host_keys}, scheduler, engine, work_dir"
    [row] = psql(url, f"select {fields} from computing_resource where name = '{REMOTE}'")
    transport, host, port, username, host_keys, scheduler, engine, work_dir = row
    host_keys = bytes.fromhex(host_keys).decode()
    return lock_key((transport, host, int(port), username, host_keys, scheduler, engine, work_dir))


def holders_of(url: str, key: int) -> list[str]:
    """The application names of the sessions holding the backend's advisory lock."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    classid, objid = unsigned >> 32, unsigned & 0xFFFFFFFF
    query = (
        "select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        f"where l.locktype = 'advisory' and l.granted and l.classid = {classid} and l.objid = {objid} "
        "and l.objsubid = 1"
    )
    return [row[0] for row in psql(url, query)]


def wait_for_holder(url: str, key: int, timeout: float, unlike: str | None = None) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        holders = holders_of(url, key)
        if holders and unlike not in holders:
            return holders
        if time.monotonic() > deadline:
            raise AssertionError(f"no controller holds the remote backend (holders: {holders})")
        time.sleep(0.05)
