"""Exit statuses of child processes are never misread, even when a child is ended just as it
exits on a busy machine (this misread 3 of 200 `true`s as status 255 before the fix)."""

import asyncio
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

from rosetta.core import processes
from tests.checks import alive


def _burn(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


async def _end_right_after_output_ends(argv: list[str]) -> int:
    process = await processes.spawn(argv, stdout=asyncio.subprocess.PIPE)
    await process.stdout.read()  # the program is exiting now...
    time.sleep(0.002)  # ...and has exited, but nobody has looked yet
    return await processes.end(process)


@pytest.fixture(params=["default watcher", "pidfd watcher"])
def watcher(request):
    """Either child watcher; the process-wide watcher is put back afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        before = policy.get_child_watcher()
        yield request.param
        policy.set_child_watcher(before)


async def test_a_child_ended_as_it_exits_reports_its_real_status_under_load(caplog, watcher):
    if watcher == "pidfd watcher":
        processes.use_pidfd_watcher()
    burners = [multiprocessing.Process(target=_burn, args=(30,), daemon=True) for _ in range(4)]
    for burner in burners:
        burner.start()
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            statuses = [await _end_right_after_output_ends(["true"]) for _ in range(300)]
            statuses += [await _end_right_after_output_ends(["sh", "-c", "exit 3"]) for _ in range(100)]
    finally:
        for burner in burners:
            burner.kill()
    assert statuses[:300] == [0] * 300 and statuses[300:] == [3] * 100
    assert not [record for record in caplog.records if "child process" in record.getMessage()]


async def test_a_child_that_does_not_exit_is_killed():
    process = await processes.spawn(["sleep", "60"])
    began = time.monotonic()
    assert await processes.end(process, grace=0.1) == -9
    assert time.monotonic() - began < 2


def test_a_child_started_to_die_with_its_parent_ends_when_the_parent_is_killed(tmp_path):
    """The registry writer and SSH masters must not outlive a platform process killed with -9."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from rosetta.core.processes import dies_with_parent\n"
        "child = subprocess.Popen(dies_with_parent(['sleep', '60']))\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )])  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the parent never started its child"
            time.sleep(0.02)
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while alive(child):
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.02)
    finally:
        parent.kill()
