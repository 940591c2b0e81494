"""A task's Slurm requests (account, QoS, GRES) reach the test bed's real cluster as sbatch options.

Only this test's own jobs are cancelled: the cluster is every other test's too."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from rosetta.computing.contract import ContainerSpec, TaskRef
from rosetta.computing.engines.podman import PodmanEngine
from rosetta.computing.errors import Refused
from rosetta.computing.schedulers.slurm import SlurmBackend, SlurmOptions
from rosetta.computing.transports.ssh import SSHTransport
from tests.integration.test_remote import bed

INSTANCE = "requests-test"


@pytest.fixture
async def cluster():
    described = bed()
    login = next(host for host in described["hosts"] if host["name"] == described["slurm"]["login_host"])
    transport = SSHTransport(
        login["address"], login["ssh_port"], "rosetta", Path(described["ssh"]["private_key"]).read_text(),
        [key["public_key"] for key in login["host_keys"]], f".rosetta-requests-{secrets.token_hex(3)}",
    )  # fmt: skip
    scheduler = SlurmBackend(transport, PodmanEngine(), SlurmOptions(account="lab", time_limit_minutes=5))
    started: list[TaskRef] = []
    yield scheduler, started
    for ref in started:  # ours alone
        await scheduler.end(ref, grace_seconds=1, log_lines=0)
    await transport.run(["rm", "-rf", transport.work_dir], timeout=30)
    await transport.close()


def spec(task_id: str, **options) -> ContainerSpec:
    image = "localhost/rosetta/not-pulled@sha256:" + "0" * 64  # the job only has to be accepted
    return ContainerSpec(task_id, INSTANCE, image, port=8080, cpus=1, memory_mb=64, scheduler_options=options)


async def test_account_and_qos_are_sbatch_options_of_the_job(cluster):
    scheduler, started = cluster
    task_id = f"treq{secrets.token_hex(3)}"
    seen = await scheduler.start(spec(task_id, account="astro", qos="high"))
    started.append(TaskRef(task_id, seen.backend_state))
    job = seen.backend_state["job"]
    listed = await scheduler.transport.run(["squeue", "--states=all", "--noheader", "-j", job, "--format=%a|%j"])
    assert listed.stdout.strip() == f"astro|rosetta-{task_id}"  # the task's account over the resource's
    # This cluster keeps no accounting: it takes a QoS without recording it. The argv carries it.
    assert "--qos=high" in scheduler.sbatch_argv(spec(task_id, qos="high"), "/w")


async def test_a_gres_the_cluster_lacks_is_refused_in_slurm_s_words(cluster):
    scheduler, _ = cluster
    with pytest.raises(Refused, match=r"Slurm refused the job: Invalid generic resource \(gres\) specification"):
        await scheduler.start(spec(f"treq{secrets.token_hex(3)}", gres="gpu:1"))
