"""The same platform on PostgreSQL: the database URL is the only switch."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.checks import burst_of_starts
from tests.instance import Platform, free_port

TESTBED = Path(__file__).resolve().parents[2] / "testbed" / "postgres.sh"


@pytest.fixture(scope="module")
def postgres():
    """(database URL, the server's directory): a PostgreSQL server of the module's own."""
    directory = tempfile.mkdtemp(prefix="rosetta-pg-")  # under /tmp: the postgres user must reach it
    url = subprocess.run([str(TESTBED), directory, str(free_port())], capture_output=True, text=True, check=True).stdout
    yield url.strip(), directory
    subprocess.run([str(TESTBED), "--stop", directory], check=False)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url(postgres):
    return postgres[0]


def test_task_lifecycle_on_postgresql(tmp_path, postgres_url):
    platform = Platform(tmp_path / "rosetta", settings={"ROSETTA_DATABASE_URL": postgres_url})
    try:
        platform.set_up()
        platform.start(separately=True)
        token = platform.create_user("emmy")
        with platform.api(token) as api:
            task_id = platform.start_task(api, name="on-postgres")
            platform.wait_for_task(api, task_id, {"running"})
            assert "Hello from Rosetta" in platform.task_client(task_id, token).get("/").text
            assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
            platform.wait_for_task(api, task_id, {"stopped"})
        # The rows are in PostgreSQL, not in a SQLite file beside them.
        assert not (platform.home / "rosetta.sqlite3").exists()
        rows = subprocess.run(
            ["psql", postgres_url, "-Atc", "select name, phase from tasks_task"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert rows.strip() == "on-postgres|stopped"
    finally:
        platform.stop()


def test_a_burst_of_starts_stops_exactly_at_the_quota_on_postgresql(tmp_path, postgres_url):
    """PostgreSQL runs concurrent transactions side by side (SQLite's take turns): the quotas a
    start must fit are locked in its transaction, so 40 starts at once against a quota of 5 give 5."""
    platform = Platform(tmp_path / "rosetta", settings={"ROSETTA_DATABASE_URL": postgres_url})
    try:
        platform.set_up()
        platform.start(separately=True)
        token = platform.create_user("hedy")
        platform.rosetta("quotas", "set", "--user", "hedy", "--tasks", "5")
        statuses = burst_of_starts(platform, token, 40, cpus=0.1, memory_mb=32)
        assert statuses.count(201) == 5 and statuses.count(409) == 35, statuses
        with platform.api(token) as api:
            for task in platform.list_tasks(api, phase="active"):
                api.post(f"/api/tasks/{task['id']}/stop")
    finally:
        platform.stop()


def test_a_database_restart_under_a_running_platform_interrupts_nothing_for_long(tmp_path, postgres):
    """PostgreSQL restarted (every connection cut): the running task stays served, and the
    controller and gateway reconnect by themselves, so a new task starts and is served."""
    url, directory = postgres
    platform = Platform(tmp_path / "rosetta", settings={"ROSETTA_DATABASE_URL": url})
    try:
        platform.set_up()
        platform.start(separately=True)
        token = platform.create_user("lise")
        with platform.api(token) as api:
            before = platform.start_task(api, name="before-restart")
            platform.wait_for_task(api, before, {"running"})
            subprocess.run([str(TESTBED), "--restart", directory], check=True)
            assert "Hello from Rosetta" in platform.task_client(before, token).get("/").text
            after = platform.start_task(api, name="after-restart")
            platform.wait_for_task(api, after, {"running"}, timeout=60)
            assert "Hello from Rosetta" in _served_once_routed(platform, after, token)
            assert api.post(f"/api/tasks/{before}/stop").status_code == 202
            platform.wait_for_task(api, before, {"stopped"}, timeout=60)
    finally:
        platform.stop()


def _served_once_routed(platform, task_id: str, token: str) -> str:
    """The gateway learns the new task's route from the database it reconnected to."""
    deadline = time.monotonic() + 20
    while True:
        answer = platform.task_client(task_id, token).get("/")
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer.text
        time.sleep(0.2)
