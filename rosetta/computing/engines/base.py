"""How a container runs: an engine turns a task's container spec into argv lists and reads
the engine's answers back as neutral observations. It executes nothing itself — the scheduler
does, through the transport — which keeps every engine a set of pure, unit-testable functions.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from rosetta.computing.contract import ContainerSpec, Observation
from rosetta.computing.errors import ComputingError, CutShort, ImageMissing, Refused, Unreachable
from rosetta.computing.transports.base import CommandResult

TASK_LABEL = "rosetta.task"
INSTANCE_LABEL = "rosetta.instance"
TASK_SECRET_ENV = "ROSETTA_TASK_SECRET"  # images/README.md: the interface demands it from every request


# Capabilities a task keeps when it runs as root in its user namespace: enough to own files,
# switch users and bind a low port, nothing that reaches the kernel or the network stack. The
# rest is dropped by name: dropping all and adding these back would hand them to non-root
# users too (engines make added capabilities ambient), while a non-root task should have none.
KEPT_CAPABILITIES = frozenset(
    {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"}
)
DROPPED_CAPABILITIES = (
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE", "DAC_READ_SEARCH",
    "IPC_LOCK", "IPC_OWNER", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
    "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETPCAP", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE",
    "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG",
    "WAKE_ALARM",
)  # fmt: skip
LOG_LIMIT = "10m"  # what a task may write to its log before the oldest output is dropped
# The runtime's words when the image's first program cannot be started (runc, crun, docker alike).
_NOT_STARTED = re.compile(
    r'exec: "(?P<program>[^"]{1,200})": (?:stat \S+: )?'
    r"(?P<why>permission denied|no such file or directory|executable file not found in \$PATH)"
)


def hardening(spec: ContainerSpec) -> list[str]:
    """What podman and docker read alike: limits, no swap, no new privileges, a read-only root
    (/tmp, /var/tmp and /run become private tmpfs; the home is the engine's to add), a bounded log."""
    return [
        "--init",  # a PID 1 that forwards signals, else a stop waits out its whole grace period
        "--cpus", format_cpus(spec.cpus),
        "--memory", f"{spec.memory_mb}m",
        "--memory-swap", f"{spec.memory_mb}m",  # the same as the memory: no swap
        "--pids-limit", "4096",
        "--security-opt", "no-new-privileges",
        "--read-only",
        "--log-opt", f"max-size={LOG_LIMIT}",
    ]  # fmt: skip


def bind_mounts(spec: ContainerSpec, target_key: str, read_only_flag: str) -> list[str]:
    """--mount options for the spec's storages (paths checked free of commas when requested)."""
    argv = []
    for mount in spec.mounts:
        options = f"type=bind,source={mount.source},{target_key}={mount.target}"
        argv += ["--mount", options + (f",{read_only_flag}" if mount.read_only else "")]
    return argv


@dataclass(frozen=True)
class ContainerEvent:
    """A change to a task's container, as the engine's event stream says it."""

    task_id: str
    coming: bool  # True: it is created or starts; False: it ends or is removed
    status: str = ""  # the engine's own word (create, start, died, remove...)
    container: str = ""  # its id


@dataclass(frozen=True)
class JobSteps:
    """The commands of a batch job's script, as argv lists (rosetta.computing.schedulers.slurm)."""

    prepare: list[str]  # creates or fetches; its output is the reason when the container cannot start
    run: list[str]  # runs the container in the foreground until it ends
    cleanup: list[str]  # removes what prepare made
    stop: list[str] | None = None  # stops it when the job is stopped (None: signal run's process)
    exit_code: list[str] | None = None  # prints the container's exit code (None: run's own status)
    labels: bool = False  # prepare takes --label before its last argument (the image)
    env_read_by_prepare: bool = False  # the environment file may go once prepare ran
    # Prints the pid of a process in the running container (its processes share a pid namespace
    # of their own); None where the container's processes descend from run's own process.
    main_pid: list[str] | None = None
    # Runs a command with the sight of the container's processes: rootless podman runs them as
    # the account's subordinate ids, whose open files the account sees from its own user
    # namespace only (`podman unshare`). Empty where they run as the account itself.
    as_container_owner: list[str] = field(default_factory=list)


# Run in a task's container: the files a person keeps in its home, relative to it, one a line,
# at most $2 of them. Hidden ones (settings, caches) and other mounts (a storage inside the
# home) are left out. Without find, it fails rather than report an empty home.
HOME_FILES_SCRIPT = (
    'command -v find >/dev/null || exit 127; cd "$1" || exit 1; '
    'find . -xdev -mindepth 1 -name ".*" -prune -o ! -type d -print 2>/dev/null | head -n "$2"'
)


def home_files_argv(home: str, limit: int) -> list[str]:
    return ["sh", "-c", HOME_FILES_SCRIPT, "sh", home, str(limit)]


def labels(spec: ContainerSpec) -> list[str]:
    return ["--label", f"{TASK_LABEL}={spec.task_id}", "--label", f"{INSTANCE_LABEL}={spec.instance}"]


def format_cpus(cpus: float) -> str:
    return str(int(cpus)) if math.isclose(cpus, round(cpus)) else f"{cpus:.2f}"


class Engine(ABC):
    """The argv lists of one container engine, and how to read its answers."""

    name: str
    task_networks = False  # each task on a network of its own, reached at the container's address
    follows_events = False  # says how to follow its containers' changes (events_argv, parse_event)
    output_files = False  # a container's output is a file it says how to find and read (log_files, log_lines)

    @staticmethod
    def container_name(task_id: str) -> str:
        return f"rosetta-{task_id}"

    @abstractmethod
    def run_argv(self, spec: ContainerSpec, env_file: str | None = None) -> list[str]:
        """Start the container detached, its environment read from ``env_file`` on the resource."""

    @staticmethod
    def env_file(spec: ContainerSpec, with_base_port: bool = True) -> bytes:
        """The task's environment as --env-file reads it: NAME=value, one per line, values taken
        literally (validation keeps newlines out of them). Values never appear in an argv, which
        every account on a machine can read. BASE_PORT is the interface's port, unless whoever
        launches it picks one (a batch job on a shared node); the task's secret comes last, so
        nothing a user sets can stand in for it."""
        env = dict(spec.env)
        if spec.base_port and with_base_port:
            env["BASE_PORT"] = str(spec.port)
        if spec.secret:
            env[TASK_SECRET_ENV] = spec.secret
        return "".join(f"{name}={value}\n" for name, value in env.items()).encode()

    @abstractmethod
    def inspect_argv(self, task_id: str) -> list[str]:
        """Describe the one task container (cheaper than listing all of them)."""

    @abstractmethod
    def parse_inspect(self, output: str, port: int) -> list[Observation]:
        """Observations from ``inspect_argv``'s output; the interface listens on ``port`` inside."""

    @abstractmethod
    def list_argv(self, instance: str) -> list[str]:
        """List this instance's task containers, running or not."""

    @abstractmethod
    def parse_list(self, output: str) -> list[Observation]:
        """Observations from the output of ``list_argv``."""

    @abstractmethod
    def stop_argv(self, task_id: str, grace_seconds: int) -> list[str]:
        """SIGTERM, then SIGKILL after the grace period; the container stays, for its logs."""

    @abstractmethod
    def stopped_one(self, result: CommandResult) -> bool:
        """Whether ``stop_argv`` found a container (else there are no logs to keep)."""

    @abstractmethod
    def remove_argv(self, task_id: str) -> list[str]:
        """Remove the container, running or not."""

    @abstractmethod
    def removed(self, result: CommandResult) -> bool:
        """Whether ``remove_argv`` left no container (removed now, or there was none)."""

    def removal_pending(self, result: CommandResult) -> bool:
        """Whether a failed removal is worth trying again in a moment (the engine still cleans up)."""
        return False

    def absent(self, result: CommandResult) -> bool:
        """Whether a failed inspect failed only because there is no such container."""
        return "no such container" in result.stderr.lower()

    @abstractmethod
    def logs_argv(self, task_id: str, *, follow: bool, tail: int | None = None) -> list[str]: ...

    @abstractmethod
    def version_argv(self) -> list[str]: ...

    @abstractmethod
    def refusal(self, result: CommandResult, spec: ContainerSpec) -> ComputingError:
        """Why ``run_argv`` failed, classified: a transient error or a refusal, in plain words."""

    def exec_argv(self, task_id: str, argv: list[str]) -> list[str]:
        """Run ``argv`` in the task's running container, as the image's user (where the engine can)."""
        raise NotImplementedError

    def job_steps(self, spec: ContainerSpec, env_file: str) -> JobSteps:
        """How a batch job's script runs the container in the foreground, with host networking
        (the job's output is the container's). Engines that run inside batch jobs say it."""
        raise NotImplementedError

    # Engines with task_networks also say how to make and remove a task's network.
    def network_create_argv(self, spec: ContainerSpec) -> list[str]:
        raise NotImplementedError

    def network_remove_argv(self, task_id: str) -> list[str]:
        raise NotImplementedError

    def network_list_argv(self, instance: str) -> list[str]:
        """List this instance's task networks (a launch cut short may leave one behind)."""
        raise NotImplementedError

    def parse_network_list(self, output: str) -> list[str]:
        """The task ids of the networks listed by ``network_list_argv``."""
        raise NotImplementedError

    def network_exists(self, result: CommandResult) -> bool:
        raise NotImplementedError

    def network_gone(self, result: CommandResult) -> bool:
        raise NotImplementedError

    def networks_removed(self, result: CommandResult) -> set[str]:
        """The task ids whose networks a batched ``networks_remove_argv`` removed."""
        raise NotImplementedError

    def networks_remove_argv(self, task_ids: list[str]) -> list[str]:
        """Remove several task networks in one command (each in use or missing is left alone)."""
        raise NotImplementedError

    # Engines that report changes as a stream say how (rosetta.computing.schedulers.watch);
    # None: the scheduler lists the containers on every poll.
    def events_argv(self, instance: str, since: float) -> list[str] | None:
        """Follow changes to ``instance``'s containers from ``since`` (seconds since the epoch) on."""
        return None

    def parse_event(self, line: str) -> ContainerEvent | None:
        """One line of ``events_argv``'s output, or None for anything else."""
        return None

    # Engines whose containers' output is a plain file say where and how to read it; None: the
    # output is read with ``logs_argv``.
    def log_files(self, inspect_output: str) -> dict[str, str]:
        """The output files of the containers in ``inspect_argv``'s output, by container id."""
        return {}

    def log_lines(self, data: bytes, lines: int, whole: bool) -> bytes:
        """The output in the last ``lines`` lines of a container's output file (``data``: its
        end, or all of it when ``whole``), as ``logs_argv`` prints it."""
        raise NotImplementedError


def not_started(said: str) -> str:
    """Why the image's program could not start, for its user, when the runtime says so."""
    match = _NOT_STARTED.search(said)
    if match is None:
        return ""
    program = match["program"]
    if match["why"] == "permission denied":
        return (
            f"The container could not start {program}: permission denied. The image's files (its / among "
            "them) must be readable by the user it runs as."
        )
    return f"The container could not start {program}: the image has no such program."


class DockerCommandLine(Engine):
    """An engine with docker's command line (docker, podman): logs read and refusals told alike."""

    prefix: list[str]
    transient_words: tuple[str, ...] = ()  # refusals that pass: try again
    cut_short_words: tuple[str, ...] = ()  # refusals that pass, once the half-made container is removed
    cut_short_reason: str = ""
    image_missing_words: tuple[str, ...] = ()
    transient_reason: str = ""

    def logs_argv(self, task_id: str, *, follow: bool, tail: int | None = None) -> list[str]:
        argv = [*self.prefix, "logs"]
        if follow:
            argv.append("--follow")
        if tail is not None:
            argv += ["--tail", str(tail)]
        return [*argv, self.container_name(task_id)]

    def exec_argv(self, task_id: str, argv: list[str]) -> list[str]:
        return [*self.prefix, "exec", self.container_name(task_id), *argv]

    def refusal(self, result: CommandResult, spec: ContainerSpec) -> ComputingError:
        raw = result.error_text()
        said = self.refusal_text(result).lower()
        if any(words in said for words in self.transient_words):
            return Unreachable(self.transient_reason, raw)
        if any(words in said for words in self.cut_short_words):
            return CutShort(self.cut_short_reason, raw)
        if any(words in said for words in self.image_missing_words):
            return ImageMissing(spec.image, raw)
        return Refused(not_started(raw) or f"{self.name} refused to start the container.", raw)

    def refusal_text(self, result: CommandResult) -> str:
        """Where the engine's words about a refusal are."""
        return result.error_text()
