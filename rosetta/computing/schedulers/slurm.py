"""Slurm: a task is a batch job whose script runs one container (rosetta.computing.schedulers.batch).

What is Slurm's own is here: sbatch's options (partition, time limit, account, QoS, GRES: the
kind's options, validated), squeue's listing read in neutral words, scancel, and the partitions
sinfo lists for `resources check`. Slurm without accounting forgets a job soon after it ends:
the shared launcher's exit file says how it ended.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from pydantic import Field
from pydantic import ValidationError as SchemaError

from rosetta.computing.contract import ContainerSpec
from rosetta.computing.engines.base import Engine
from rosetta.computing.errors import ComputingError, Refused, Unreachable
from rosetta.computing.kinds import Kind, Options
from rosetta.computing.schedulers import batch
from rosetta.computing.schedulers.batch import BatchBackend, Job, JobEnvironment
from rosetta.computing.transports.base import CommandResult, Transport

SQUEUE_FIELDS = "%i|%j|%T|%r|%N|%e|%S|%k"  # id, name, state, reason, nodes, end, (expected) start, comment
SINFO_FIELDS = "%P|%l|%c|%m|%D|%a"  # partition (* = default), time limit, cpus and MB per node, nodes, state
SLURM_JOB = JobEnvironment("slurm.job", "SLURM_JOB_ID", "SLURMD_NODENAME")  # the label the test bed's Epilog reads
_ENDINGS = {
    "CANCELLED": "The job was cancelled outside Rosetta.",
    "TIMEOUT": "The job reached its time limit.",
    "NODE_FAIL": "The node running the job failed.",
    "BOOT_FAIL": "The node for the job failed to start.",
    "OUT_OF_MEMORY": "The program ran out of memory and was killed.",
    "PREEMPTED": "The job was preempted by another one.",
    "DEADLINE": "The job reached its deadline.",
    "FAILED": "",  # the exit code says it
    "COMPLETED": "",
}
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
_STARTING = {"CONFIGURING", "RESIZING"}
_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


# Slurm's names (partitions, accounts, QoS) and GRES (gpu:a100:2,shard:1): plain words, no shell characters.
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$|^$"
GRES = r"^[A-Za-z0-9][A-Za-z0-9._:,-]*$|^$"
MAX_MINUTES = 525600  # a year


class SlurmOptions(Options):
    """A Slurm resource's defaults for its jobs (sbatch's options of the same names)."""

    partition: str = Field("", max_length=64, pattern=NAME, description="Where jobs go ('': the cluster's default).")
    time_limit_minutes: int = Field(
        60, ge=1, le=MAX_MINUTES, description="Minutes a job may run", json_schema_extra={"flag": "time-limit"}
    )
    account: str = Field("", max_length=64, pattern=NAME, description="The account jobs are charged to.")
    qos: str = Field("", max_length=64, pattern=NAME, description="The quality of service jobs ask for.")
    gres: str = Field("", max_length=128, pattern=GRES, description="Generic resources per node (gpu:2).")


class SlurmRequest(SlurmOptions):
    """What a task may ask of a Slurm resource: the same options, each empty (0) for the resource's own."""

    time_limit_minutes: int = Field(0, ge=0, le=MAX_MINUTES, description="How long the job may run (0: the default).")


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    max_minutes: int | None  # None: no limit
    cpus_per_node: int
    memory_mb_per_node: int
    nodes: int
    up: bool


class SlurmBackend(BatchBackend):
    name = "Slurm"
    job_environment = SLURM_JOB
    max_starts = 4

    def __init__(self, transport: Transport, engine: Engine, options: SlurmOptions | None = None) -> None:
        super().__init__(transport, engine)
        self.options = options or SlurmOptions()  # the resource's defaults for its jobs

    @property
    def description(self) -> str:
        return f"Slurm with {self.engine.name}"

    # -- submitting ----------------------------------------------------------------------------

    def submit_argv(self, spec: ContainerSpec, directory: str) -> list[str]:
        return self.sbatch_argv(spec, directory)

    def sbatch_argv(self, spec: ContainerSpec, directory: str) -> list[str]:
        argv = [
            "sbatch", "--parsable",
            "--no-requeue",  # a task whose node fails ends, with that reason, rather than silently restarting
            f"--job-name=rosetta-{spec.task_id}",
            f"--comment=rosetta.instance={spec.instance}",
            f"--output={directory}/job.log",
            f"--chdir={directory}",
            f"--cpus-per-task={max(1, math.ceil(spec.cpus))}",
            f"--mem={spec.memory_mb}M",
        ]  # fmt: skip
        return [*argv, *self.request_argv(spec.scheduler_options), f"{directory}/job.sh"]

    def request_argv(self, asked: dict) -> list[str]:
        """sbatch's options for what the task asks (validated: SlurmRequest), the resource's defaults
        for what it leaves out; one argv word each (no shell reads them)."""
        try:
            request = SlurmRequest.model_validate(asked)
        except SchemaError as error:  # stored before a schema changed: the job is not sent half-understood
            raise Refused(f"The task's Slurm options are not valid any more: {error}") from None
        argv = [f"--time={request.time_limit_minutes or self.options.time_limit_minutes}"]
        for name in ("partition", "account", "qos", "gres"):
            value = getattr(request, name) or getattr(self.options, name)
            if value:
                argv.append(f"--{name}={value}")
        return argv

    def submit_refusal(self, result: CommandResult) -> ComputingError:
        return _sbatch_refusal(result)

    # -- watching and stopping -----------------------------------------------------------------

    def list_argv(self) -> list[str]:
        return ["squeue", "--me", "--states=all", "--noheader", f"--format={SQUEUE_FIELDS}"]

    def parse_jobs(self, output: str, instance: str) -> list[Job]:
        return [_neutral(job) for job in parse_squeue(output, instance)]

    def cancel_argv(self, job: str) -> list[str]:
        return ["scancel", job]

    def cancelled(self, result: CommandResult) -> bool:
        return result.ok or "invalid job id" in result.stderr.lower()  # gone already

    # -- what the cluster offers ---------------------------------------------------------------

    async def partitions(self) -> list[Partition]:
        result = await self.transport.run(["sinfo", "--noheader", f"--format={SINFO_FIELDS}"], timeout=60)
        if not result.ok:
            raise Unreachable("sinfo did not answer.", result.error_text())
        return parse_sinfo(result.stdout)


def launcher(engine: Engine, spec: ContainerSpec, directory: str) -> str:
    """The job script of a Slurm job (the shared launcher, with Slurm's job variables)."""
    return batch.launcher(engine, spec, directory, SLURM_JOB)


def _neutral(job: dict) -> Job:
    """A job as squeue lists it, in neutral words (a state Slurm adds later reads as ended)."""
    state = job["state"]
    phase = ("waiting" if state in _WAITING else "starting" if state in _STARTING
             else "running" if state in _RUNNING else "ended")  # fmt: skip
    reason = _pending(job["reason"]) if phase == "waiting" else _ENDINGS.get(state, "")
    return Job(job["id"], job["task_id"], phase, reason=reason, scheduler_reason=job["reason"] if phase == "waiting"
               else "", nodes=job["nodes"], starts_at=job["start"], ends_at=job["end"])  # fmt: skip


def parse_squeue(output: str, instance: str) -> list[dict]:
    """This instance's jobs (their comment names it), one dict each."""
    jobs = []
    for line in output.splitlines():
        fields = line.split("|")
        if len(fields) != 8 or fields[7] != f"rosetta.instance={instance}" or not fields[1].startswith("rosetta-"):
            continue
        job_id, name, state, reason, nodes, end, start, _ = fields
        jobs.append({
            "id": job_id, "task_id": name.removeprefix("rosetta-"), "state": state.split()[0], "reason": reason,
            "nodes": nodes, "end": _time(end), "start": _time(start),
        })  # fmt: skip
    return jobs


def parse_sinfo(output: str) -> list[Partition]:
    partitions: dict[str, Partition] = {}
    for line in output.splitlines():
        fields = line.split("|")
        if len(fields) != 6:
            continue
        name, limit, cpus, memory, nodes, availability = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        found = Partition(
            name, default, _minutes(limit), _number(cpus), _number(memory), _number(nodes), availability == "up"
        )
        known = partitions.get(name)
        if known is None or found.cpus_per_node > known.cpus_per_node:  # heterogeneous nodes: the largest
            partitions[name] = found
    return list(partitions.values())


def _pending(reason: str) -> str:
    return {"Resources": "waiting for resources", "Priority": "other jobs come first",
            "PartitionNodeLimit": "more nodes than the partition allows", "None": ""}.get(reason, reason)  # fmt: skip


def _time(text: str) -> str:
    """Slurm's local ISO time (no zone: the cluster's) to ISO 8601 in UTC, or "" when unknown."""
    if not text or text in ("N/A", "Unknown", "NONE"):
        return ""
    try:
        return datetime.fromisoformat(text).astimezone(UTC).isoformat()
    except ValueError:
        return ""


def _minutes(limit: str) -> int | None:
    """Slurm's [D-]HH:MM:SS (or MM, MM:SS, "infinite") in minutes."""
    if limit in ("infinite", "UNLIMITED", "NONE", ""):
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(part) for part in clock.split(":")]
    hours, minutes = (parts[0], parts[1]) if len(parts) == 3 else (0, parts[0])
    return int(days or 0) * 1440 + hours * 60 + minutes


def _number(text: str) -> int:
    return int("".join(char for char in text if char.isdigit()) or 0)


def _sbatch_refusal(result: CommandResult) -> ComputingError:
    text = result.error_text()
    if "unable to contact slurm controller" in text.lower() or "socket timed out" in text.lower():
        return Unreachable("The cluster's scheduler is not answering.", text)
    return Refused(f"Slurm refused the job: {text.removeprefix('sbatch: error: ').strip()}", text)


# -- the kind ------------------------------------------------------------------------------------


def _slurm(transport: Transport, engine: Engine, resource) -> SlurmBackend:
    return SlurmBackend(transport, engine, SlurmOptions.model_validate(resource.scheduler_options))


def _reached_remotely(resource, combination) -> None:
    if combination.transport.local:
        raise ValidationError("A batch scheduler is reached over SSH (its login node).")


async def _check(backend: SlurmBackend, report) -> None:
    report.partitions = [asdict(partition) for partition in await backend.partitions()]


def _check_request(resource, cpus: float, memory_mb: int, asked: dict) -> None:
    """Refuse a job the partition cannot take, as the resource's last check found its limits."""
    partitions = {p["name"]: p for p in resource.facts.get("partitions", [])}
    if not partitions:
        return
    request, defaults = SlurmRequest.model_validate(asked), SlurmOptions.model_validate(resource.scheduler_options)
    name = (
        request.partition or defaults.partition or next((p for p, found in partitions.items() if found["default"]), "")
    )
    found = partitions.get(name)
    if found is None:
        raise ValidationError(f"{resource.name} has no partition {name!r}; it has {', '.join(sorted(partitions))}.")
    minutes = request.time_limit_minutes or defaults.time_limit_minutes
    if found["max_minutes"] is not None and minutes > found["max_minutes"]:
        raise ValidationError(f"At most {found['max_minutes']} minutes in partition {name} of {resource.name}.")
    if memory_mb > found["memory_mb_per_node"]:
        raise ValidationError(
            f"At most {found['memory_mb_per_node']} MiB per node in partition {name} of {resource.name}."
        )
    if cpus > found["cpus_per_node"]:
        raise ValidationError(f"At most {found['cpus_per_node']} CPUs per node in partition {name} of {resource.name}.")


KIND = Kind(
    "scheduler", "slurm", "Slurm", _slurm, options=SlurmOptions, request=SlurmRequest, batch=True,
    validate=_reached_remotely, check=_check, check_request=_check_request,
)  # fmt: skip
