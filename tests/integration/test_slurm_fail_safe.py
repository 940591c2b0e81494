"""Slurm's answers read cautiously, on the test bed's real cluster: a job is over only when the
cluster says so twice, or the launcher's exit file says it ended.

A busy slurmctld may answer `squeue` with exit status 0 and nothing at all. That cannot be
caused on demand, so the transport here hands the scheduler an empty listing once, in place of
the cluster's answer; every other command, the job and the cluster are real.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from rosetta.computing.contract import Seen, TaskRef
from rosetta.computing.engines.podman import PodmanEngine
from rosetta.computing.schedulers.slurm import SlurmBackend
from rosetta.computing.transports.base import CommandResult
from rosetta.computing.transports.ssh import SSHTransport
from tests.integration.test_remote import bed

INSTANCE = "failsafe-test"


class EmptyListingOnce(SSHTransport):
    """The cluster's account over SSH, whose next `squeue` answers nothing, successfully."""

    empty_listings = 0
    jobs: list[str]

    async def run(self, argv, *, timeout: float = 60.0, stdin: bytes | None = None) -> CommandResult:
        if argv[0] == "squeue" and self.empty_listings:
            self.empty_listings -= 1
            return CommandResult(tuple(argv), 0, "", "")
        return await super().run(argv, timeout=timeout, stdin=stdin)


@pytest.fixture
async def cluster():
    described = bed()
    login = next(host for host in described["hosts"] if host["name"] == described["slurm"]["login_host"])
    transport = EmptyListingOnce(
        login["address"], login["ssh_port"], "rosetta", Path(described["ssh"]["private_key"]).read_text(),
        [key["public_key"] for key in login["host_keys"]], f".rosetta-failsafe-{secrets.token_hex(3)}",
    )  # fmt: skip
    transport.jobs = []
    scheduler = SlurmBackend(transport, PodmanEngine())
    yield scheduler, transport
    if transport.jobs:
        await transport.run(["scancel", *transport.jobs], timeout=30)
    await transport.run(["rm", "-rf", transport.work_dir], timeout=30)
    await transport.close()


async def submit(transport: SSHTransport, task_id: str) -> str:
    """A job as the platform names it, that runs until cancelled (no container: only the job matters)."""
    await transport.connection()
    result = await transport.run([
        "sbatch", "--parsable", f"--job-name=rosetta-{task_id}", f"--comment=rosetta.instance={INSTANCE}",
        f"--output={transport.work_dir}/{task_id}.log", "--time=5", "--wrap", "sleep 300",
    ])  # fmt: skip
    assert result.ok, result.stderr
    transport.jobs.append(result.stdout.strip().split(";")[0])
    return transport.jobs[-1]


async def observe(scheduler: SlurmBackend, ref: TaskRef):
    return (await scheduler.poll(INSTANCE, [ref]))[ref.task_id]


async def until_listed(scheduler: SlurmBackend, ref: TaskRef):
    for _ in range(40):
        seen = await observe(scheduler, ref)
        if seen.state is not Seen.UNKNOWN:
            return seen
    raise AssertionError("the job never showed in squeue")


async def test_one_empty_listing_ends_nothing_and_cancels_nothing(cluster):
    scheduler, transport = cluster
    task_id = "tfs" + secrets.token_hex(3)
    job = await submit(transport, task_id)
    ref = TaskRef(task_id, {"job": job})
    assert (await until_listed(scheduler, ref)).state in (Seen.QUEUED, Seen.STARTING)

    transport.empty_listings = 1  # the busy controller's answer
    assert (await observe(scheduler, ref)).state is Seen.UNKNOWN  # not "ended": the controller leaves it
    assert (await observe(scheduler, ref)).state in (Seen.QUEUED, Seen.STARTING)  # still there, untouched
    state = await transport.run(["squeue", "--noheader", "-j", job, "--format=%T"])
    assert state.stdout.strip() in ("PENDING", "RUNNING")

    # Gone for real: two listings in a row without it make it ended.
    await transport.run(["scancel", job])
    seen = await observe(scheduler, ref)
    for _ in range(40):
        if seen.state is Seen.ENDED:
            break
        seen = await observe(scheduler, ref)
    assert seen.state is Seen.ENDED


async def test_the_launchers_exit_file_ends_a_job_at_once(cluster):
    scheduler, transport = cluster
    task_id = "tfs" + secrets.token_hex(3)
    job = await submit(transport, task_id)
    ref = TaskRef(task_id, {"job": job})
    await until_listed(scheduler, ref)
    await transport.write_file(f"{scheduler.task_dir(task_id)}/exit", b"3\n")  # what the launcher leaves
    transport.empty_listings = 1
    seen = await observe(scheduler, ref)
    assert (seen.state, seen.exit_code) == (Seen.ENDED, 3)
