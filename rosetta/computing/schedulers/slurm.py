"""Slurm: a task is a batch job whose script runs one container.

Inside the job, a launcher the platform generates picks a free port on the node (when the
software takes its port from BASE_PORT), creates the container with host networking (the HPC
way), and writes where the interface listens — node address and port — into the task's
directory on the cluster's shared file system. The controller reads that file through the
transport: compute nodes never connect back to the platform. When the job is stopped the
launcher stops the container first; an Epilog on the cluster is the safety net.

Slurm without accounting forgets a job soon after it ends, so a known job that is gone is
read as finished, its exit code taken from the file the launcher leaves.
"""

from __future__ import annotations

import asyncio
import json
import math
import posixpath
import re
import shlex
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from pydantic import Field
from pydantic import ValidationError as SchemaError

from rosetta.computing.contract import ContainerSpec, Observation, Seen, TaskRef
from rosetta.computing.engines.base import Engine
from rosetta.computing.errors import ComputingError, Refused, Unreachable
from rosetta.computing.kinds import Kind, Options
from rosetta.computing.schedulers.base import Keep, Scheduler
from rosetta.computing.transports.base import CommandResult, Transport

SQUEUE_FIELDS = "%i|%j|%T|%r|%N|%e|%S|%k"  # id, name, state, reason, nodes, end, (expected) start, comment
SINFO_FIELDS = "%P|%l|%c|%m|%D|%a"  # partition (* = default), time limit, cpus and MB per node, nodes, state
STOP_GRACE = 5  # seconds the launcher gives the container when the job is stopped
# A busy slurmctld may answer squeue with nothing at all (exit status 0): one listing without a
# known job proves nothing. A job is gone once this many listings in a row lack it, or at once
# when the launcher's exit file says it ended.
MISSING_LISTINGS_FOR_GONE = 2
MAX_LAUNCHER_REASON = 300  # characters of the launcher's own reason read back
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # as the launcher may write it (read as untrusted)
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
    time_limit_minutes: int = Field(60, ge=1, le=MAX_MINUTES, description="How long a job may run.")
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


class SlurmScheduler(Scheduler):
    poll_interval = 3.0  # squeue is a request to the cluster's controller: not every second
    endpoint_comes_later = True  # the launcher writes it once the container listens
    max_starts = 4

    def __init__(self, transport: Transport, engine: Engine, options: SlurmOptions | None = None) -> None:
        super().__init__(transport, engine)
        self.options = options or SlurmOptions()  # the resource's defaults for its jobs
        self._missing: dict[str, int] = {}  # task id -> listings in a row that lacked its job

    @property
    def description(self) -> str:
        return f"Slurm with {self.engine.name}"

    def task_dir(self, task_id: str) -> str:
        return posixpath.join(self.transport.work_dir, task_id)

    # -- submitting ----------------------------------------------------------------------------

    async def start(self, spec: ContainerSpec) -> Observation:
        directory = self.task_dir(spec.task_id)
        await self.make_mount_sources(spec)  # on the login node: the cluster's shared file system
        await self.transport.write_file(f"{directory}/env", self.engine.env_file(spec, with_base_port=False))
        await self.transport.write_file(f"{directory}/job.sh", launcher(self.engine, spec, directory).encode(), 0o700)
        result = await self.transport.run(self.sbatch_argv(spec, directory), timeout=60)
        if not result.ok:
            await self.transport.run(["rm", "-rf", directory], timeout=60)
            raise _sbatch_refusal(result)
        job = result.stdout.strip().split(";")[0]
        return Observation(spec.task_id, Seen.QUEUED, handle={"job": job})

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

    # -- watching ------------------------------------------------------------------------------

    async def poll(self, instance: str, tasks: Iterable[TaskRef]) -> dict[str, Observation]:
        result = await self.transport.run(
            ["squeue", "--me", "--states=all", "--noheader", f"--format={SQUEUE_FIELDS}"], timeout=self.poll_timeout
        )
        if not result.ok:
            raise Unreachable("squeue did not answer.", result.error_text())
        jobs = {job["task_id"]: job for job in parse_squeue(result.stdout, instance)}
        known = {ref.task_id: ref for ref in tasks}
        observations = {}
        for task_id, job in jobs.items():
            ref = known.get(task_id)
            if job["state"] in _ENDINGS and ref is None:
                continue  # a finished job of a finished task: Slurm forgets it soon, nothing to do
            observations[task_id] = await self._observe(task_id, job, ref)
        missing = {task_id: ref for task_id, ref in known.items() if task_id not in jobs and ref.handle.get("job")}
        self._missing = {task_id: self._missing.get(task_id, 0) + 1 for task_id in missing}
        for task_id, ref in missing.items():
            observations[task_id] = await self._gone(task_id, ref)
        return observations

    async def _observe(self, task_id: str, job: dict, ref: TaskRef | None) -> Observation:
        handle = {"job": job["id"]}
        state = job["state"]
        if state in _WAITING:
            if job["start"]:
                handle["starts_at"] = job["start"]
            return Observation(
                task_id, Seen.QUEUED, reason=_pending(job["reason"]), handle={**handle, "reason": job["reason"]}
            )
        if job["end"]:
            handle["ends_at"] = job["end"]
        if state in _STARTING:
            return Observation(task_id, Seen.STARTING, handle=handle)
        if state in _RUNNING:
            endpoint = ref.endpoint if ref and ref.endpoint else await self._endpoint(task_id)
            if endpoint is None:  # the job runs; its container is not up yet (an image pull, say)
                return Observation(task_id, Seen.STARTING, handle=handle)
            return Observation(task_id, Seen.RUNNING, endpoint=endpoint, handle={**handle, "node": job["nodes"]})
        return await self._ended(task_id, _ENDINGS.get(state, ""), handle)

    async def _gone(self, task_id: str, ref: TaskRef) -> Observation:
        """A job Slurm no longer lists ended some time ago, when the launcher's exit file says so
        or Slurm lacked it in enough listings in a row; until then nothing is concluded (the
        controller then leaves the task, and its job, as they are)."""
        confirmed = await self._exit_code(task_id) is not None
        if not confirmed and self._missing.get(task_id, 0) < MISSING_LISTINGS_FOR_GONE:
            return Observation(task_id, Seen.UNKNOWN, handle=ref.handle)
        return await self._ended(task_id, "", ref.handle)

    async def _ended(self, task_id: str, reason: str, handle: dict) -> Observation:
        code = await self._exit_code(task_id)
        detail = ""
        reason = reason or await self._launcher_reason(task_id)
        if code is None and not reason:
            reason = "The job ended; Slurm no longer says how (cancelled, or out of time)."
        elif code and await self._endpoint(task_id) is None:  # the container never came up
            detail = (await self.transport.read_file(f"{self.task_dir(task_id)}/create.log") or b"").decode(
                errors="replace"
            )
            reason = reason or "The container could not be created on the node."
        return Observation(task_id, Seen.ENDED, exit_code=code, reason=reason, detail=detail.strip()[-2000:],
                           handle=handle)  # fmt: skip

    async def _launcher_reason(self, task_id: str) -> str:
        """Why the launcher ended the task itself (its port held by another program), if it did:
        one line of plain text, read as untrusted (the account's other work can write there)."""
        written = await self.transport.read_file(f"{self.task_dir(task_id)}/reason") or b""
        line = written.decode(errors="replace").partition("\n")[0]
        return "".join(char for char in line if char.isprintable())[:MAX_LAUNCHER_REASON]

    async def late_endpoint(self, task: TaskRef) -> Observation | None:
        written = await self._launcher_endpoint(task.task_id)
        if written is None:
            return None
        endpoint, node = written
        handle = {**task.handle, "node": node} if node else task.handle
        return Observation(task.task_id, Seen.RUNNING, endpoint=endpoint, handle=handle)

    async def _endpoint(self, task_id: str) -> tuple[str, int] | None:
        written = await self._launcher_endpoint(task_id)
        return written[0] if written else None

    async def _launcher_endpoint(self, task_id: str) -> tuple[tuple[str, int], str] | None:
        """Where the launcher wrote the container listens, once it did (never before: a port held
        by another program is not the task's), and the node it named (when a plain node name)."""
        written = await self.transport.read_file(f"{self.task_dir(task_id)}/endpoint.json")
        if not written:
            return None
        try:
            found = json.loads(written)
            endpoint = str(found["host"]), int(found["port"])
        except (ValueError, KeyError, TypeError):
            return None
        node = found.get("node")
        return endpoint, node if isinstance(node, str) and NODE_NAME.fullmatch(node) else ""

    async def _exit_code(self, task_id: str) -> int | None:
        written = await self.transport.read_file(f"{self.task_dir(task_id)}/exit")
        try:
            return int(written.strip()) if written else None
        except ValueError:
            return None

    # -- stopping ------------------------------------------------------------------------------

    async def end(self, task: TaskRef, grace_seconds: int, log_lines: int, keep: Keep | None = None) -> bytes:
        job = task.handle.get("job")
        directory = self.task_dir(task.task_id)
        if job:
            result = await self.transport.run(["scancel", job], timeout=60)
            if not result.ok and "invalid job id" not in result.stderr.lower():
                raise Unreachable("scancel did not take the job.", result.error_text())
            await self._until_launcher_done(task.task_id, grace_seconds + STOP_GRACE + 5)
        output = b""
        if log_lines:
            log = await self.transport.read_file(f"{directory}/job.log")
            output = b"".join((log or b"").splitlines(keepends=True)[-log_lines:])
            if log is not None and keep is not None:
                await keep(output)
        await self.transport.run(["rm", "-rf", directory], timeout=60)
        return output

    async def _until_launcher_done(self, task_id: str, timeout: float) -> None:
        """The launcher writes its exit file once the container has stopped (or it never ran)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if await self.transport.read_file(f"{self.task_dir(task_id)}/exit") is not None:
                return
            if await self.transport.read_file(f"{self.task_dir(task_id)}/job.sh") is None:
                return  # nothing was ever launched there
            await asyncio.sleep(0.5)

    def logs(self, task: TaskRef, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
        directory = self.task_dir(task.task_id)
        lines = str(tail) if tail is not None else "+1"
        if not follow:
            return self.transport.stream(["tail", "-n", lines, f"{directory}/job.log"])
        # Follow until the launcher has written its exit file: a fixed script, paths as arguments.
        script = 'tail -n "$1" -F "$2" & t=$!; while [ ! -e "$3" ]; do sleep 1; done; sleep 1; kill "$t"'
        return self.transport.stream(["sh", "-c", script, "sh", lines, f"{directory}/job.log", f"{directory}/exit"])

    # -- what the cluster offers ---------------------------------------------------------------

    async def partitions(self) -> list[Partition]:
        result = await self.transport.run(["sinfo", "--noheader", f"--format={SINFO_FIELDS}"], timeout=60)
        if not result.ok:
            raise Unreachable("sinfo did not answer.", result.error_text())
        return parse_sinfo(result.stdout)


# With host networking another job on the node could listen on the task's port first (or as
# well): it would be sent the task's requests, and the task's secret with each. The launcher
# writes where the interface listens only once every socket listening on that port belongs to
# the container (a process in the container's pid namespace, or one descending from the
# launcher's own child); a port held by anything else ends the task, saying so. Sockets come
# from /proc/net/tcp{,6} (state 0A: listening), their holders from /proc/PID/fd, which this
# account reads for its own processes (and, from its user namespace, its containers') only: a
# holder it cannot see is someone else's.
LISTENER_CHECK = r"""listening_pids() {  # the holders of sockets listening on TCP port $1 ("?" where unseen)
    local inode found hex
    hex=$(printf ':%04X' "$1")
    for inode in $(awk -v port="$hex" '$4 == "0A" && substr($2, length($2) - 4) == port { print $10 }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null); do
        found=$(as_container_owner find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\[$inode\]" 2>/dev/null |
            head -n 1)
        found=${found#/proc/}
        echo "${found%%/*}" | grep -x '[0-9][0-9]*' || echo "?"
    done
}
in_container() {  # whether process $1 is the container's
    local pid=$1 namespace
    [ "$pid" != "?" ] || return 1
    namespace=$(readlink "/proc/$(container_pid)/ns/pid" 2>/dev/null)
    [ -n "$namespace" ] && [ "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" = "$namespace" ] && return 0
    while [ -n "$pid" ] && [ "$pid" -gt 1 ]; do
        [ "$pid" = "$child" ] && return 0
        pid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    done
    return 1
}
wait_for_listener() {  # until port $1 is listened on, holder=ours or other; holder= if the container ended first
    local pids pid
    holder=
    while kill -0 "$child" 2>/dev/null; do  # in this shell, not a subshell: a stop's trap runs between steps
        pids=$(listening_pids "$1")
        if [ -n "$pids" ]; then
            holder=ours
            for pid in $pids; do in_container "$pid" || holder=other; done
            return
        fi
        sleep 0.2
    done
}
"""


def launcher(engine: Engine, spec: ContainerSpec, directory: str) -> str:
    """The job script: the container on a free port of the node, where it listens written down,
    stopped cleanly when the job is. Only argv lists quoted with shlex go in; nothing else from
    the request (its environment stays in the 0600 file beside it)."""
    steps = engine.job_steps(spec, f"{directory}/env")
    *options, image = steps.prepare  # the image comes last; the label lets the Epilog find what escapes
    prepare = (
        f'{shlex.join(options)} --label "slurm.job=$SLURM_JOB_ID" {shlex.quote(image)}'
        if steps.labels
        else (shlex.join(steps.prepare))
    )
    # Without a stop command, the engine's process is signalled (it stops its container itself).
    stop = shlex.join(steps.stop) if steps.stop else 'kill -TERM "$child"'
    exit_code = f"$({shlex.join(steps.exit_code)} 2>/dev/null || echo 255)" if steps.exit_code else "$status"
    forget_env = "rm -f env" if steps.env_read_by_prepare else ":"
    main_pid = f"{shlex.join(steps.main_pid)} 2>/dev/null" if steps.main_pid else ":"
    as_owner = shlex.join(steps.as_container_owner)
    if spec.base_port:
        choose_port = (
            "port=$(python3 -c 'import socket; s = socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])' "
            "2>/dev/null || shuf -i 20000-60000 -n 1)\n"
            'printf "BASE_PORT=%s\\n" "$port" >> env\n'
        )
    else:
        choose_port = f"port={spec.port}\n"
    return f"""#!/bin/bash
# Rosetta task {spec.task_id}: one container, its interface on this node. Generated by the platform.
set -u
cd {shlex.quote(directory)}
{choose_port}host=$(hostname -I | awk '{{print $1}}')
{prepare} > create.log 2>&1
created=$?
{forget_env}
if [ "$created" -ne 0 ]; then echo "$created" > exit; exit "$created"; fi
stop_container() {{ {stop} >/dev/null 2>&1; }}
trap stop_container TERM INT
{shlex.join(steps.run)} &
child=$!
{LISTENER_CHECK}container_pid() {{ {main_pid}; }}
as_container_owner() {{ {as_owner} "$@"; }}
wait_for_listener "$port"
case "$holder" in
    ours)
        printf '{{"host": "%s", "port": %s, "node": "%s"}}\\n' "$host" "$port" "${{SLURMD_NODENAME:-}}" \\
            > endpoint.json.part
        mv endpoint.json.part endpoint.json ;;
    other)
        printf 'Port %s on %s is held by another program, not the task'"'"'s container: %s\\n' "$port" \\
            "${{SLURMD_NODENAME:-the node}}" "Rosetta sends the task's requests nowhere else." > reason
        stop_container ;;
esac
wait "$child"; status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done  # a signal interrupts wait, not the container
code={exit_code}
{shlex.join(steps.cleanup)} >/dev/null 2>&1
rm -f env
echo "$code" > exit
"""


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


def _slurm(transport: Transport, engine: Engine, resource) -> SlurmScheduler:
    return SlurmScheduler(transport, engine, SlurmOptions.model_validate(resource.scheduler_options))


def _reached_remotely(resource, combination) -> None:
    if combination.transport.local:
        raise ValidationError("A batch scheduler is reached over SSH (its login node).")


async def _check(backend: SlurmScheduler, report) -> None:
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
