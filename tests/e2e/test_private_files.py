"""Everything the platform writes is private to its account: another local account (`nobody`)
reads none of it, not the database with its session keys, not the secret key."""

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.instance import Platform

pytestmark = pytest.mark.skipif(not shutil.which("runuser"), reason="needs runuser to act as another account")


@pytest.fixture
def open_parent():
    """A directory every account may enter, as /srv or /opt would be: only the home's own
    permissions then stand between its files and other accounts."""
    parent = Path(tempfile.mkdtemp(prefix="rosetta-private-"))
    parent.chmod(0o755)
    yield parent
    shutil.rmtree(parent)


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True, text=True, timeout=30)


def loose_entries(home: Path) -> list[str]:
    """Entries under ``home`` (itself included) that give any permission to group or others."""
    found = []
    for path in [home, *home.rglob("*")]:
        status = path.lstat()
        if not stat.S_ISLNK(status.st_mode) and status.st_mode & 0o077:
            found.append(f"{stat.filemode(status.st_mode)} {path.relative_to(home.parent)}")
    return found


def test_no_other_account_reads_what_the_platform_wrote(open_parent):
    platform = Platform(open_parent / "home")
    platform.set_up()
    try:
        platform.start()
        token = platform.create_user("ada")
        with platform.api(token) as api:
            task_id = platform.start_task(api)
            platform.wait_for_task(api, task_id, {"running"})
            assert platform.task_client(task_id, token).get("/").status_code == 200
            api.post(f"/api/tasks/{task_id}/stop")
            platform.wait_for_task(api, task_id, {"stopped"})
        database = platform.home / "rosetta.sqlite3"
        written = {path.name for path in platform.home.rglob("*")}
        assert {"rosetta.sqlite3", "rosetta.sqlite3-wal", "secret_key", "instance_id", "web.sock"} <= written, written

        assert loose_entries(platform.home) == []
        assert as_nobody("true").returncode == 0  # nobody can run programs at all: the refusals below mean something
        refused = as_nobody("cat", str(database))
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        assert as_nobody("ls", str(platform.home)).returncode != 0
    finally:
        platform.stop()


def test_a_home_made_before_is_made_private_on_start(open_parent):
    home = open_parent / "home"
    (home / "run").mkdir(parents=True, mode=0o755)
    old = home / "run" / "controller.log"
    old.write_text("written by an earlier version")
    old.chmod(0o644)
    home.chmod(0o755)
    assert as_nobody("cat", str(old)).returncode == 0  # the attack, as it was

    Platform(home).rosetta("setup")  # any command that opens the platform's state

    assert loose_entries(home) == []
    assert as_nobody("cat", str(old)).returncode != 0
    assert os.stat(home).st_uid == os.getuid()
