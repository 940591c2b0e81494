"""The same platform on PostgreSQL: the database URL is the only switch."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.instance import Platform, free_port

TESTBED = Path(__file__).resolve().parents[2] / "testbed" / "postgres.sh"


@pytest.fixture(scope="module")
def postgres_url():
    directory = tempfile.mkdtemp(prefix="rosetta-pg-")  # under /tmp: the postgres user must reach it
    url = subprocess.run([str(TESTBED), directory, str(free_port())], capture_output=True, text=True, check=True).stdout
    yield url.strip()
    subprocess.run([str(TESTBED), "--stop", directory], check=False)
    shutil.rmtree(directory, ignore_errors=True)


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
