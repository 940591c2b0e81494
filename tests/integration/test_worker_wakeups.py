"""On PostgreSQL the builder and the pusher (rosetta.core.worker) wake at a NOTIFY from any
machine, not only at their next poll, and listen again after the database restarts."""

import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from rosetta.core.notify import channel
from rosetta.core.worker import Wakeups
from tests.instance import free_port

POSTGRES = Path(__file__).resolve().parents[2] / "testbed" / "postgres.sh"
POLL = 10.0


@pytest.fixture
def database():
    directory = tempfile.mkdtemp(prefix="rosetta-pg-")  # under /tmp: the postgres user must reach it
    url = subprocess.run([str(POSTGRES), directory, str(free_port())], capture_output=True, text=True, check=True)
    try:
        yield url.stdout.strip(), directory
    finally:
        subprocess.run([str(POSTGRES), "--stop", directory], check=False)
        subprocess.run(["rm", "-rf", directory], check=False)


def signal_from_another_machine(url: str, listener: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_notify(%s, '*')", [channel(listener)])


def waited(wakeups: Wakeups, timeout: float = POLL) -> float:
    started = time.monotonic()
    wakeups.wait(timeout)
    return time.monotonic() - started


def test_a_notify_wakes_the_worker_at_once_and_again_after_a_database_restart(database, tmp_path, monkeypatch):
    monkeypatch.setenv("ROSETTA_HOME", str(tmp_path))
    url, directory = database
    with Wakeups("builder", lambda: psycopg.connect(url, autocommit=True)) as wakeups:
        assert waited(wakeups, 0.3) >= 0.3  # nothing signalled: the poll
        signal_from_another_machine(url, "builder")
        assert waited(wakeups) < 1

        subprocess.run([str(POSTGRES), "--restart", directory], check=True)  # every connection is cut
        assert waited(wakeups) < 1  # the lost connection ends the wait: a pass runs
        assert waited(wakeups) < 2  # listening again (after a short delay), and a pass for what was lost
        signal_from_another_machine(url, "builder")
        assert waited(wakeups) < 1
        assert waited(wakeups, 0.3) >= 0.3
