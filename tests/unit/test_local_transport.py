"""The local transport's files and the kernel log's memory-limit kills."""

import os
import stat

from rosetta.computing.errors import Unreachable
from rosetta.computing.transports import kernel_log
from rosetta.computing.transports.kernel_log import KernelMemoryKills, parse_record
from rosetta.computing.transports.local import LocalTransport

CONTAINER = "7c2b0ccbfa2e3710fd92b9123a1f88e42d67fab6e0a79e9afcfc129383251a87"
KILL = (
    f"3,1234,342818709,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=libpod-{CONTAINER},"
    f"mems_allowed=0,oom_memcg=/libpod_parent/libpod-{CONTAINER},task_memcg=/libpod_parent/libpod-{CONTAINER},"
    "task=tail,pid=10852,uid=1000\n"
)


async def test_files_are_written_whole_and_private_and_read_back(tmp_path):
    transport = LocalTransport()
    path = str(tmp_path / "work" / "connection.json")
    assert await transport.read_file(path) is None
    await transport.write_file(path, b'{"host": "10.0.0.3", "port": 40123}')
    assert await transport.read_file(path) == b'{"host": "10.0.0.3", "port": 40123}'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path / "work") == ["connection.json"]  # no temporary left behind
    await transport.remove_file(path)
    await transport.remove_file(path)  # already gone: fine
    assert await transport.read_file(path) is None


async def test_a_command_that_does_not_answer_is_unreachable_and_named_as_people_call_it():
    transport = LocalTransport()
    try:
        await transport.run(["env", "A=1", "sleep", "5"], timeout=0.2)
    except Unreachable as error:
        assert str(error) == "sleep did not answer within 0.2 s on this machine."
    else:
        raise AssertionError("no timeout")
    result = await transport.run(["sh", "-c", "cat; echo err >&2; exit 3"], stdin=b"in")
    assert (result.returncode, result.stdout, result.stderr) == (3, "in", "err\n")


def test_memory_kills_are_read_from_kernel_records():
    assert parse_record(KILL) == (CONTAINER, "tail")
    assert parse_record("6,1,2,-;Memory cgroup out of memory: Killed process 10852 (tail)") is None


def test_memory_kills_are_counted_per_container_and_only_new_records_read(tmp_path):
    log = tmp_path / "kmsg"
    log.write_text(KILL + KILL.replace("task=tail", "task=python3"))
    kills = KernelMemoryKills(str(log))
    counted = kills.read()[CONTAINER]
    assert (counted.count, counted.last_process) == (2, "python3")
    assert kills.read()[CONTAINER].count == 2  # read again: nothing new
    kills.close()


def test_an_unreadable_kernel_log_means_unknown_not_an_error(tmp_path):
    assert KernelMemoryKills(str(tmp_path / "missing")).read() is None


def test_kills_of_only_the_latest_containers_are_remembered(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel_log, "MAX_CONTAINERS", 3)  # kmsg gives a record per read; a file, 8 KiB

    def kill_in(number: int) -> str:
        return KILL.replace(CONTAINER, f"{number:064x}")

    log = tmp_path / "kmsg"
    log.write_text("".join(kill_in(n) for n in (0, 1, 2, 0, 3, 4)))
    kills = KernelMemoryKills(str(log)).read()
    assert set(kills) == {f"{n:064x}" for n in (0, 3, 4)}  # the latest three; the oldest forgotten
    assert kills[f"{0:064x}"].count == 2  # killed again lately: kept, with its whole count
