"""Slurm: the job script the platform generates, and how squeue/sinfo answers are read."""

import shlex
import subprocess
from dataclasses import replace

from rosetta.computing.contract import ContainerSpec, Mount
from rosetta.computing.engines.apptainer import ApptainerEngine
from rosetta.computing.engines.podman import PodmanEngine
from rosetta.computing.schedulers.slurm import launcher, parse_sinfo, parse_squeue

IMAGE = "10.231.0.1:5000/rosetta/hello@sha256:" + "a" * 64
SPEC = ContainerSpec(task_id="tjob1", instance="inst", image=IMAGE, port=8080, cpus=1.5, memory_mb=512,
                     env={"SECRET": "$(rm -rf /) `id`"}, base_port=True)  # fmt: skip


def test_the_job_script_is_valid_bash_and_carries_no_value_from_the_request():
    script = launcher(PodmanEngine(), SPEC, "/home/alice/.rosetta/work/tjob1")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "rm -rf /" not in script and "SECRET" not in script  # the environment stays in its 0600 file
    assert "--network host" in script and "--env-file /home/alice/.rosetta/work/tjob1/env" in script
    assert "BASE_PORT=%s" in script  # the port is the node's to choose
    create = next(line for line in script.splitlines() if line.startswith("podman create"))
    assert create.endswith(f'--label "slurm.job=$SLURM_JOB_ID" {shlex.quote(SPEC.image)} > create.log 2>&1')


def test_a_fixed_port_is_used_as_is_when_the_software_does_not_read_base_port():
    fixed = ContainerSpec(**{**SPEC.__dict__, "base_port": False})
    script = launcher(PodmanEngine(), fixed, "/w/tjob1")
    assert "port=8080\n" in script and "BASE_PORT" not in script


def test_squeue_is_read_for_this_instance_only():
    output = (
        "12|rosetta-t1|PENDING|Resources|||2026-11-26T03:00:00|rosetta.instance=inst\n"
        "13|rosetta-t2|RUNNING|None|node1|2026-11-26T02:00:00|2026-11-26T01:00:00|rosetta.instance=inst\n"
        "14|rosetta-t3|RUNNING|None|node2|N/A|N/A|rosetta.instance=other\n"
        "15|someone-else|RUNNING|None|node2|N/A|N/A|\n"
    )
    jobs = {job["task_id"]: job for job in parse_squeue(output, "inst")}
    assert set(jobs) == {"t1", "t2"}
    assert jobs["t1"]["state"] == "PENDING" and jobs["t1"]["reason"] == "Resources" and jobs["t1"]["start"]
    assert jobs["t2"]["nodes"] == "node1" and jobs["t2"]["end"].endswith("+00:00")


def test_sinfo_gives_partitions_and_their_limits():
    partitions = {p.name: p for p in parse_sinfo("debug*|1:00:00|2|4096|2|up\nlong|1-00:00:00|4|8000+|3|up\n")}
    assert partitions["debug"].default and partitions["debug"].max_minutes == 60
    assert partitions["long"].max_minutes == 1440 and partitions["long"].memory_mb_per_node == 8000
    assert parse_sinfo("any|infinite|1|1000|1|down\n")[0].max_minutes is None


def test_apptainer_fetches_the_image_by_digest_and_runs_it_in_the_foreground():
    steps = ApptainerEngine().job_steps(ContainerSpec(**{**SPEC.__dict__, "insecure_pull": True}), "/w/tjob1/env")
    assert steps.prepare == ["apptainer", "pull", "--force", "--no-https", "image.sif", f"docker://{IMAGE}"]
    assert steps.run[:2] == ["apptainer", "run"] and "--cleanenv" in steps.run and "--containall" in steps.run
    assert steps.run[steps.run.index("--env-file") + 1] == "/w/tjob1/env" and steps.run[-1] == "image.sif"
    assert steps.stop is None and steps.exit_code is None  # the job signals it and reads its status
    script = launcher(ApptainerEngine(), SPEC, "/w/tjob1")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert 'kill -TERM "$child"' in script and "code=$status" in script


def test_apptainer_binds_the_tasks_storages_read_only_where_they_say():
    spec = replace(SPEC, mounts=(Mount("/shared/home/ada", "/home/rosetta/home"), Mount("/data", "/data", True)))
    run = ApptainerEngine().job_steps(spec, "/w/tjob1/env").run
    binds = [run[i + 1] for i, word in enumerate(run) if word == "--mount"]
    assert binds == [
        "type=bind,source=/shared/home/ada,destination=/home/rosetta/home",
        "type=bind,source=/data,destination=/data,ro",
    ]
    assert run[-1] == "image.sif"


def test_apptainer_makes_a_storage_at_the_home_its_home():
    spec = replace(SPEC, mounts=(Mount("/shared/home/ada", "/home/rosetta"), Mount("/data", "/data", True)))
    run = ApptainerEngine().job_steps(spec, "/w/tjob1/env").run
    assert run[run.index("--home") + 1] == "/shared/home/ada:/home/rosetta"  # HOME and the working directory
    assert [run[i + 1] for i, word in enumerate(run) if word == "--mount"] == [
        "type=bind,source=/data,destination=/data,ro"
    ]
    assert "--home" not in ApptainerEngine().job_steps(SPEC, "/w/tjob1/env").run


def test_sbatch_takes_the_task_s_requests_over_the_resource_s_defaults_one_word_each():
    from rosetta.computing.schedulers.slurm import SlurmBackend, SlurmOptions
    from rosetta.computing.transports.local import LocalTransport

    defaults = SlurmOptions(partition="debug", time_limit_minutes=30, account="lab", qos="normal", gres="")
    scheduler = SlurmBackend(LocalTransport(), PodmanEngine(), defaults)
    spec = replace(SPEC, scheduler_options={"account": "astro", "gres": "gpu:a100:2", "time_limit_minutes": 90})
    argv = scheduler.sbatch_argv(spec, "/w/t1")
    assert argv[-6:] == ["--time=90", "--partition=debug", "--account=astro", "--qos=normal", "--gres=gpu:a100:2",
                         "/w/t1/job.sh"]  # fmt: skip
    bare = scheduler.sbatch_argv(SPEC, "/w/t1")
    assert bare[-5:] == ["--time=30", "--partition=debug", "--account=lab", "--qos=normal", "/w/t1/job.sh"]


def test_the_shared_launcher_takes_each_scheduler_s_job_variables():
    from rosetta.computing.schedulers import batch

    slurm = launcher(PodmanEngine(), SPEC, "/w/tjob1")
    assert '--label "slurm.job=$SLURM_JOB_ID"' in slurm and "${SLURMD_NODENAME:-}" in slurm
    pbs = batch.launcher(PodmanEngine(), SPEC, "/w/tjob1", batch.JobEnvironment("pbs.job", "PBS_JOBID"))
    assert subprocess.run(["bash", "-n"], input=pbs, text=True).returncode == 0
    assert '--label "pbs.job=$PBS_JOBID"' in pbs and "SLURM" not in pbs


def test_squeue_states_read_in_neutral_words():
    from rosetta.computing.schedulers.slurm import SlurmBackend
    from rosetta.computing.transports.local import LocalTransport

    line = "7|rosetta-t1|{state}|{reason}|node1|2026-01-01T10:00:00|2026-01-01T09:00:00|rosetta.instance=inst"
    scheduler = SlurmBackend(LocalTransport(), PodmanEngine())
    said = {
        (state, reason): scheduler.parse_jobs(line.format(state=state, reason=reason), "inst")[0]
        for state, reason in [("PENDING", "Resources"), ("RUNNING", "None"), ("TIMEOUT", "None"), ("NEWSTATE", "x")]
    }
    assert [(job.phase, job.reason) for job in said.values()] == [
        ("waiting", "waiting for resources"), ("running", ""), ("ended", "The job reached its time limit."),
        ("ended", ""),
    ]  # fmt: skip
    assert said[("PENDING", "Resources")].scheduler_reason == "Resources"
