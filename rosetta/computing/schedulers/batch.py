"""What every batch scheduler shares: a task is a batch job whose script runs one container.

Inside the job, a launcher the platform generates picks a free port on the node (when the
software takes its port from BASE_PORT), creates the container with host networking (the HPC
way), and writes where the interface listens — node address and port — into the task's
directory on the cluster's shared file system. The controller reads that file through the
transport: compute nodes never connect back to the platform. When the job is stopped the
launcher stops the container first; an Epilog on the cluster is the safety net.

A scheduler without accounting forgets a job soon after it ends, so a known job that is gone is
read as finished, its exit code taken from the file the launcher leaves.

A batch scheduler (rosetta.computing.schedulers.slurm; PBS or HTCondor alike) says only its own:
the argv that submits, lists and cancels jobs, and how its listing reads (``parse_jobs``: each of
this instance's jobs in neutral words, a ``Job``).
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import shlex
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Literal

from rosetta.computing.contract import ContainerSpec, Observation, Seen, TaskRef
from rosetta.computing.engines.base import Engine
from rosetta.computing.errors import ComputingError, Refused, Unreachable
from rosetta.computing.schedulers.base import Backend, Keep
from rosetta.computing.transports.base import CommandResult

STOP_GRACE = 5  # seconds the launcher gives the container when the job is stopped
# A busy scheduler may answer a listing with nothing at all (exit status 0): one listing without a
# known job proves nothing. A job is gone once this many listings in a row lack it, or at once
# when the launcher's exit file says it ended.
MISSING_LISTINGS_FOR_GONE = 2
MAX_LAUNCHER_REASON = 300  # characters of the launcher's own reason read back
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # as the launcher may write it (read as untrusted)


@dataclass(frozen=True)
class JobEnvironment:
    """What a job's script learns from its scheduler: the variable holding its job id (a label on
    the container, for the cluster's Epilog) and the one naming its node, if any."""

    label: str  # the container's label carrying the job id
    id_variable: str
    node_variable: str = ""


@dataclass(frozen=True)
class Job:
    """One of this instance's jobs, as the scheduler's listing says, in neutral words."""

    id: str
    task_id: str
    phase: Literal["waiting", "starting", "running", "ended"]
    reason: str = ""  # in plain words: why it waits, how it ended (empty: the exit code says it)
    scheduler_reason: str = ""  # the scheduler's own word for why it waits (kept on the task)
    nodes: str = ""
    starts_at: str = ""  # ISO 8601 (UTC), when expected to start; "" when unknown
    ends_at: str = ""  # ISO 8601 (UTC), when its time limit ends it; "" when unknown


class BatchBackend(Backend):
    poll_interval = 3.0  # a listing is a request to the cluster's controller: not every second
    endpoint_comes_later = True  # the launcher writes it once the container listens
    name = "The batch scheduler"  # how messages call it
    job_environment = JobEnvironment("batch.job", "JOB_ID")

    def __init__(self, transport, engine: Engine) -> None:
        super().__init__(transport, engine)
        self._missing: dict[str, int] = {}  # task id -> listings in a row that lacked its job

    # -- what each scheduler says: its argv and how its answers read ------------------------------

    @abstractmethod
    def submit_argv(self, spec: ContainerSpec, directory: str) -> list[str]:
        """Submit ``{directory}/job.sh`` as the task's job: named rosetta-TASK_ID, marked as this
        instance's (spec.instance), its output in ``{directory}/job.log``, within the task's limits."""

    def job_id(self, submitted: CommandResult) -> str:
        """The job's id from what the submission printed."""
        return submitted.stdout.strip().split(";")[0]

    def submit_refusal(self, result: CommandResult) -> ComputingError:
        return Refused(f"{self.name} refused the job: {result.error_text()}", result.error_text())

    @abstractmethod
    def list_argv(self) -> list[str]:
        """List the account's jobs, recently ended ones included."""

    @abstractmethod
    def parse_jobs(self, output: str, instance: str) -> list[Job]:
        """This instance's jobs in the listing."""

    @abstractmethod
    def cancel_argv(self, job: str) -> list[str]: ...

    def cancelled(self, result: CommandResult) -> bool:
        """Whether the job is cancelled or was gone already."""
        return result.ok

    # -- submitting ----------------------------------------------------------------------------

    def task_dir(self, task_id: str) -> str:
        return posixpath.join(self.transport.work_dir, task_id)

    async def start(self, spec: ContainerSpec) -> Observation:
        directory = self.task_dir(spec.task_id)
        await self.make_mount_sources(spec)  # on the login node: the cluster's shared file system
        await self.transport.write_file(f"{directory}/env", self.engine.env_file(spec, with_base_port=False))
        script = launcher(self.engine, spec, directory, self.job_environment)
        await self.transport.write_file(f"{directory}/job.sh", script.encode(), 0o700)
        result = await self.transport.run(self.submit_argv(spec, directory), timeout=60)
        if not result.ok:
            await self.transport.run(["rm", "-rf", directory], timeout=60)
            raise self.submit_refusal(result)
        return Observation(spec.task_id, Seen.QUEUED, backend_state={"job": self.job_id(result)})

    # -- watching ------------------------------------------------------------------------------

    async def poll(self, instance: str, tasks: Iterable[TaskRef]) -> dict[str, Observation]:
        argv = self.list_argv()
        result = await self.transport.run(argv, timeout=self.poll_timeout)
        if not result.ok:
            raise Unreachable(f"{argv[0]} did not answer.", result.error_text())
        jobs = {job.task_id: job for job in self.parse_jobs(result.stdout, instance)}
        known = {ref.task_id: ref for ref in tasks}
        observations = {}
        for task_id, job in jobs.items():
            ref = known.get(task_id)
            if job.phase == "ended" and ref is None:
                continue  # a finished job of a finished task: the scheduler forgets it soon, nothing to do
            observations[task_id] = await self._observe(job, ref)
        missing = {
            task_id: ref for task_id, ref in known.items() if task_id not in jobs and ref.backend_state.get("job")
        }
        self._missing = {task_id: self._missing.get(task_id, 0) + 1 for task_id in missing}
        for task_id, ref in missing.items():
            observations[task_id] = await self._gone(task_id, ref)
        return observations

    async def _observe(self, job: Job, ref: TaskRef | None) -> Observation:
        task_id, state = job.task_id, {"job": job.id}
        if job.phase == "waiting":
            if job.starts_at:
                state["starts_at"] = job.starts_at
            return Observation(
                task_id, Seen.QUEUED, reason=job.reason, backend_state={**state, "reason": job.scheduler_reason}
            )
        if job.ends_at:
            state["ends_at"] = job.ends_at
        if job.phase == "starting":
            return Observation(task_id, Seen.STARTING, backend_state=state)
        if job.phase == "running":
            endpoint = ref.endpoint if ref and ref.endpoint else await self._endpoint(task_id)
            if endpoint is None:  # the job runs; its container is not up yet (an image pull, say)
                return Observation(task_id, Seen.STARTING, backend_state=state)
            return Observation(task_id, Seen.RUNNING, endpoint=endpoint, backend_state={**state, "node": job.nodes})
        return await self._ended(task_id, job.reason, state)

    async def _gone(self, task_id: str, ref: TaskRef) -> Observation:
        """A job the scheduler no longer lists ended some time ago, when the launcher's exit file
        says so or the scheduler lacked it in enough listings in a row; until then nothing is
        concluded (the controller then leaves the task, and its job, as they are)."""
        confirmed = await self._exit_code(task_id) is not None
        if not confirmed and self._missing.get(task_id, 0) < MISSING_LISTINGS_FOR_GONE:
            return Observation(task_id, Seen.UNKNOWN, backend_state=ref.backend_state)
        return await self._ended(task_id, "", ref.backend_state)

    async def _ended(self, task_id: str, reason: str, state: dict) -> Observation:
        code = await self._exit_code(task_id)
        detail = ""
        reason = reason or await self._launcher_reason(task_id)
        if code is None and not reason:
            reason = f"The job ended; {self.name} no longer says how (cancelled, or out of time)."
        elif code and await self._endpoint(task_id) is None:  # the container never came up
            detail = (await self.transport.read_file(f"{self.task_dir(task_id)}/create.log") or b"").decode(
                errors="replace"
            )
            reason = reason or "The container could not be created on the node."
        return Observation(task_id, Seen.ENDED, exit_code=code, reason=reason, detail=detail.strip()[-2000:],
                           backend_state=state)  # fmt: skip

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
        state = {**task.backend_state, "node": node} if node else task.backend_state
        return Observation(task.task_id, Seen.RUNNING, endpoint=endpoint, backend_state=state)

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
        job = task.backend_state.get("job")
        directory = self.task_dir(task.task_id)
        if job:
            argv = self.cancel_argv(job)
            result = await self.transport.run(argv, timeout=60)
            if not self.cancelled(result):
                raise Unreachable(f"{argv[0]} did not take the job.", result.error_text())
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


def launcher(engine: Engine, spec: ContainerSpec, directory: str, job: JobEnvironment) -> str:
    """The job script: the container on a free port of the node, where it listens written down,
    stopped cleanly when the job is. Only argv lists quoted with shlex go in; nothing else from
    the request (its environment stays in the 0600 file beside it)."""
    steps = engine.job_steps(spec, f"{directory}/env")
    *options, image = steps.prepare  # the image comes last; the label lets the Epilog find what escapes
    prepare = (
        f'{shlex.join(options)} --label "{job.label}=${job.id_variable}" {shlex.quote(image)}'
        if steps.labels
        else (shlex.join(steps.prepare))
    )
    # Without a stop command, the engine's process is signalled (it stops its container itself).
    stop = shlex.join(steps.stop) if steps.stop else 'kill -TERM "$child"'
    exit_code = f"$({shlex.join(steps.exit_code)} 2>/dev/null || echo 255)" if steps.exit_code else "$status"
    forget_env = "rm -f env" if steps.env_read_by_prepare else ":"
    main_pid = f"{shlex.join(steps.main_pid)} 2>/dev/null" if steps.main_pid else ":"
    as_owner = shlex.join(steps.as_container_owner)
    node = f"${{{job.node_variable}:-}}" if job.node_variable else ""
    node_said = f"${{{job.node_variable}:-the node}}" if job.node_variable else "the node"
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
        printf '{{"host": "%s", "port": %s, "node": "%s"}}\\n' "$host" "$port" "{node}" \\
            > endpoint.json.part
        mv endpoint.json.part endpoint.json ;;
    other)
        printf 'Port %s on %s is held by another program, not the task'"'"'s container: %s\\n' "$port" \\
            "{node_said}" "Rosetta sends the task's requests nowhere else." > reason
        stop_container ;;
esac
wait "$child"; status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done  # a signal interrupts wait, not the container
code={exit_code}
{shlex.join(steps.cleanup)} >/dev/null 2>&1
rm -f env
echo "$code" > exit
"""
