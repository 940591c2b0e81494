"""Several Rosetta machines sharing one PostgreSQL, played on this one: homes of their own
(ROSETTA_HOME), machine names of their own (ROSETTA_NODE), the same secret key. Used by
tests/integration/test_scale_out.py and benchmarks/takeover.py."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rosetta.tasks.leadership import lock_key
from tests.instance import Platform, free_port

POSTGRES = Path(__file__).resolve().parents[1] / "testbed" / "postgres.sh"
TESTBED = Path("/var/lib/rosetta-testbed")
REMOTE = "testbed-host"  # the test bed's SSH host with rootless podman
WEB_TIER = ("web", "controller", "gateway")  # what every machine runs; the registry runs on the first


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own (testbed/postgres.sh); its URL."""
    directory = tempfile.mkdtemp(prefix="rosetta-pg-")  # under /tmp: the postgres user must reach it
    try:
        url = subprocess.run([str(POSTGRES), directory, str(free_port())], capture_output=True, text=True, check=True)
        yield url.stdout.strip()
    finally:
        subprocess.run([str(POSTGRES), "--stop", directory], check=False)
        shutil.rmtree(directory, ignore_errors=True)


def two_machines(homes: tuple[Path, Path], database_url: str) -> tuple[Platform, Platform]:
    """Machines a (everything, the registry included) and b (web, controller, gateway), not started."""
    described = json.loads((TESTBED / "testbed.json").read_text())
    shared = {
        "ROSETTA_DATABASE_URL": database_url,
        "ROSETTA_SECRET_KEY": secrets.token_urlsafe(50),
        "ROSETTA_TESTBED_DIR": str(TESTBED),
        # The registry runs on machine a; resources pull from it whichever machine asks.
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    }
    a = Platform(homes[0], settings={**shared, "ROSETTA_NODE": "machine-a"})
    b = Platform(homes[1], settings={**shared, "ROSETTA_NODE": "machine-b"})
    return a, b


def start_both(a: Platform, b: Platform) -> None:
    a.set_up()
    a.start(separately=True)
    b.set_up()
    for name in WEB_TIER:
        b.start_component(name)
    b.wait_until_up()


def stop_both(a: Platform, b: Platform, token: str) -> None:
    """Every task stopped by its own machine, then both machines."""
    for machine in (a, b):
        if "controller" not in machine.processes:
            machine.start_component("controller")
    with a.api(token) as api:
        active = a.list_tasks(api, phase="active")
        for task in active:
            api.post(f"/api/tasks/{task['id']}/stop")
        for task in active:
            a.wait_for_task(api, task["id"], {"stopped", "exited", "failed"}, timeout=60)
    b.stop()
    a.stop()


def start(api, resource: str, name: str) -> str:
    response = api.post("/api/tasks", json={"software": "hello", "resource": resource, "name": name})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def psql(url: str, query: str) -> list[list[str]]:
    out = subprocess.run(["psql", url, "-AtF", "\t", "-c", query], capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def remote_lock_key(url: str, name: str = REMOTE) -> int:
    """A remote resource's lock number, computed as the controllers compute it."""
    host_keys = "encode(convert_to(host_keys, 'UTF8'), 'hex')"  # one line, whatever the keys hold
    fields = f"transport, host, port, username, {host_keys}, scheduler, engine, work_dir"
    [row] = psql(url, f"select {fields} from computing_resource where name = '{name}'")
    transport, host, port, username, host_keys, scheduler, engine, work_dir = row
    host_keys = bytes.fromhex(host_keys).decode()
    return lock_key((transport, host, int(port), username, host_keys, scheduler, engine, work_dir))


def holders_of(url: str, key: int) -> list[str]:
    """The application names ("rosetta-controller NODE PID") of the sessions holding a lock."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    classid, objid = unsigned >> 32, unsigned & 0xFFFFFFFF
    query = (
        "select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        f"where l.locktype = 'advisory' and l.granted and l.classid = {classid} and l.objid = {objid} "
        "and l.objsubid = 1"
    )
    return [row[0] for row in psql(url, query)]


def wait_for_holder(url: str, key: int, timeout: float, unlike: str | None = None) -> list[str]:
    """The lock's holders once there is one (other than ``unlike``)."""
    deadline = time.monotonic() + timeout
    while True:
        holders = holders_of(url, key)
        if holders and unlike not in holders:
            return holders
        if time.monotonic() > deadline:
            raise AssertionError(f"no controller holds the lock (holders: {holders})")
        time.sleep(0.05)
