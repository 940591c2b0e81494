"""Leadership between controllers on one machine (file locks): one holder per backend, and the
next one as soon as the holder's process dies."""

import os
import signal
import subprocess
import sys

from rosetta.tasks.leadership import FileLeadership, lock_key


def test_a_backends_lock_number_is_the_same_everywhere_and_differs_between_backends():
    ssh = ("ssh", "10.0.0.5", 22, "rosetta", "ssh-ed25519 AAAA", "none", "podman", ".rosetta")
    elsewhere = subprocess.run(  # another process (another machine): the same number
        [sys.executable, "-c", f"from rosetta.tasks.leadership import lock_key; print(lock_key({ssh!r}))"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "random"},
    ).stdout  # fmt: skip
    assert int(elsewhere) == lock_key(ssh)
    assert lock_key(ssh) != lock_key((*ssh[:1], "10.0.0.6", *ssh[2:]))
    assert lock_key(("local", "machine-a", "none", "podman", ".rosetta")) != lock_key(
        ("local", "machine-b", "none", "podman", ".rosetta")
    )
    assert -(2**63) <= lock_key(ssh) < 2**63  # what pg_try_advisory_lock(bigint) takes


HOLD_THEN_WAIT = """
import asyncio, sys, time
from pathlib import Path
from rosetta.tasks.leadership import FileLeadership
print(asyncio.run(FileLeadership(Path(sys.argv[1])).hold(42)), flush=True)
time.sleep(600)
"""


async def test_one_process_leads_a_backend_and_another_takes_over_when_it_dies(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", HOLD_THEN_WAIT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "True"
        here = FileLeadership(tmp_path)
        assert await here.hold(42) is False  # the other process leads
        assert await here.hold(43) is True  # another backend is free
        os.kill(other.pid, signal.SIGKILL)
        other.wait(timeout=30)
        assert await here.hold(42) is True  # released by the kernel with its holder
        assert here.held == {42, 43}
        await here.close()
        assert here.held == set()
    finally:
        other.kill()
        other.wait()
