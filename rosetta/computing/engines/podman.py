"""The podman engine (rootful or rootless)."""

from __future__ import annotations

import json
import os
import re
import resource as rlimit
import shutil
from pathlib import Path

from rosetta.computing import firewall
from rosetta.computing.contract import ContainerSpec, Observation, Seen
from rosetta.computing.engines.base import (
    DROPPED_CAPABILITIES,
    INSTANCE_LABEL,
    TASK_LABEL,
    ContainerEvent,
    DockerCommandLine,
    JobSteps,
    bind_mounts,
    hardening,
    labels,
)
from rosetta.computing.kinds import Kind, transport_is_local
from rosetta.computing.transports.base import CommandResult
from rosetta.core.paths import home

# podman's container states, in neutral words.
_SEEN = {
    "created": Seen.STARTING,
    "configured": Seen.STARTING,
    "initialized": Seen.STARTING,
    "running": Seen.RUNNING,
    "stopping": Seen.RUNNING,
    "exited": Seen.ENDED,
    "stopped": Seen.ENDED,
    "dead": Seen.ENDED,
    "removing": Seen.ENDED,
}
# podman's events that change what `ps` lists (others, such as exec, change nothing there):
# coming (created, started) or going (ended, removed).
_COMING = frozenset({"create", "init", "start", "restart", "restore", "unpause"})
_GOING = frozenset({"died", "exited", "stop", "kill", "cleanup", "remove", "pause", "checkpoint"})
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
# What podman prints when an image is neither here nor obtainable from its registry.
_IMAGE_MISSING = (
    "image not known",
    "pinging container registry",
    "manifest unknown",
    "name unknown",
    "repository does not exist",
    "requested access to the resource is denied",
    "unable to pull",
)
# Conditions that pass: another podman holds a lock, or our own earlier attempt left the
# container behind (the next pass finds and adopts it).
_TRANSIENT = ("is already in use", "error acquiring lock", "database is locked", "resource temporarily unavailable")
# Conditions that pass once the container podman created is removed: mounting the image's layers
# failed while other podman processes used the same image store ("creating overlay mount to
# .../merged, ...: permission denied" was seen under concurrent starts).
_CUT_SHORT = ("creating overlay mount to", "mounting storage for container")


JOB_STOP_GRACE = 5  # seconds a container in a batch job is given when the job is stopped
USER_NAMESPACE_SIZE = 65536  # ids a task may use; each task gets its own range of the host's
# What a network of the task pool is (tasks' and the builder's): no DNS, isolated from every other
# network, and no IPv6 (see rosetta.computing.firewall).
TASK_NETWORK_OPTIONS = ("--disable-dns", "--opt", "isolate=true", "--opt", f"mtu={firewall.NETWORK_MTU}")


class PodmanEngine(DockerCommandLine):
    """Runs each task hardened: non-root on the host, few capabilities, no new privileges, a
    read-only root with private writable space, a bounded log, no swap.

    ``task_networks`` (rootful podman on this machine): each task gets a network of its own,
    isolated from every other, and nothing is published: its interface is reached at the
    container's address, which the machine's firewall (rosetta.computing.firewall) lets only
    the platform's account open. Otherwise (rootless podman on a shared host) the interface is
    published on the host's loopback.
    """

    name = "podman"
    follows_events = True
    output_files = True  # where its log driver is k8s-file, as here (log_files tells)
    transient_words = _TRANSIENT
    image_missing_words = _IMAGE_MISSING
    transient_reason = "podman is busy with this task's container; trying again."
    cut_short_words = _CUT_SHORT
    cut_short_reason = "podman could not mount the image's files (the image store was busy)."

    def __init__(
        self,
        executable: str = "podman",
        containers_conf: str | None = None,
        closed_containers_conf: str | None = None,
        task_networks: bool = False,
        user_namespaces: bool = False,
    ) -> None:
        # containers.conf is passed through `env` rather than the process environment so that
        # the same argv works over any transport.
        self.prefix = self._prefix(executable, containers_conf)
        # Networks of tasks without outbound access come from another address pool (its own
        # containers.conf), which the firewall keeps from leaving the machine.
        self.closed_prefix = self._prefix(executable, closed_containers_conf or containers_conf)
        self.task_networks = task_networks
        self.user_namespaces = user_namespaces

    @staticmethod
    def _prefix(executable: str, containers_conf: str | None) -> list[str]:
        return ["env", f"CONTAINERS_CONF={containers_conf}", executable] if containers_conf else [executable]

    @staticmethod
    def network_name(task_id: str) -> str:
        return f"rosetta-{task_id}"

    def run_argv(self, spec: ContainerSpec, env_file: str | None = None) -> list[str]:
        argv = [
            *self.prefix, "run", "--detach", "--name", self.container_name(spec.task_id), *labels(spec),
            *hardening(spec), "--cap-drop", ",".join(DROPPED_CAPABILITIES), *_scratch_home(spec),
            f"--pull={spec.pull}", *_tls(spec),
        ]  # fmt: skip
        if self.task_networks:
            argv += ["--network", self.network_name(spec.task_id)]
        else:
            argv += ["--publish", f"127.0.0.1::{spec.port}"]
        argv += self._identity(spec) + _mounts(spec)
        if env_file is not None:
            argv += ["--env-file", env_file]
        return [*argv, spec.image]

    def _identity(self, spec: ContainerSpec) -> list[str]:
        """Which ids the task has on the host. Rootful: a user namespace of its own, or with
        storages its owner's fixed range, in which the platform gives the storages' files to the
        task's user. Rootless on a shared host: the account itself is the task's user (1000, the
        image convention's), so what the task writes to a storage is the account's."""
        if self.user_namespaces:
            if spec.mounts and spec.id_base is not None:
                mapping = f"0:{spec.id_base}:{USER_NAMESPACE_SIZE}"
                return ["--uidmap", mapping, "--gidmap", mapping]
            return [f"--userns=auto:size={USER_NAMESPACE_SIZE}"]
        return ["--userns=keep-id:uid=1000,gid=1000"] if spec.mounts else []

    def job_steps(self, spec: ContainerSpec, env_file: str) -> JobSteps:
        name = self.container_name(spec.task_id)
        create = [
            *self.prefix, "create", "--name", name, *labels(spec), *hardening(spec),
            "--cap-drop", ",".join(DROPPED_CAPABILITIES), *_scratch_home(spec),
            "--network", "host", f"--pull={spec.pull}", *_tls(spec), *self._identity(spec), *_mounts(spec),
            "--env-file", env_file, spec.image,
        ]  # fmt: skip
        return JobSteps(
            prepare=create,
            run=[*self.prefix, "start", "--attach", name],
            stop=[*self.prefix, "stop", "--time", str(JOB_STOP_GRACE), name],
            exit_code=[*self.prefix, "inspect", "--format", "{{.State.ExitCode}}", name],
            cleanup=[*self.prefix, "rm", "--force", name],
            labels=True,
            env_read_by_prepare=True,
            main_pid=[*self.prefix, "inspect", "--format", "{{.State.Pid}}", name],  # conmon is no child of the job
            as_container_owner=[*self.prefix, "unshare"],
        )

    def network_create_argv(self, spec: ContainerSpec) -> list[str]:
        prefix = self.prefix if spec.outbound else self.closed_prefix
        return [
            *prefix, "network", "create", *TASK_NETWORK_OPTIONS,
            "--label", f"{TASK_LABEL}={spec.task_id}", "--label", f"{INSTANCE_LABEL}={spec.instance}",
            self.network_name(spec.task_id),
        ]  # fmt: skip

    def network_remove_argv(self, task_id: str) -> list[str]:
        return [*self.prefix, "network", "rm", self.network_name(task_id)]

    def network_list_argv(self, instance: str) -> list[str]:
        return [*self.prefix, "network", "ls", "--format", "json", "--filter", f"label={INSTANCE_LABEL}={instance}"]

    def parse_network_list(self, output: str) -> list[str]:
        networks = json.loads(output or "[]") or []
        return [task_id for network in networks if (task_id := (network.get("labels") or {}).get(TASK_LABEL))]

    @staticmethod
    def network_exists(result: CommandResult) -> bool:
        return "already exists" in result.stderr

    @staticmethod
    def network_gone(result: CommandResult) -> bool:
        return result.ok or "network not found" in result.stderr

    def networks_remove_argv(self, task_ids: list[str]) -> list[str]:
        return [*self.prefix, "network", "rm", *map(self.network_name, task_ids)]  # never --force: see networks.py

    def networks_removed(self, result: CommandResult) -> set[str]:
        # podman goes on past a network it cannot remove and names each one it removed.
        prefix = self.network_name("")
        return {name.removeprefix(prefix) for name in result.stdout.split() if name.startswith(prefix)}

    def events_argv(self, instance: str, since: float) -> list[str]:
        return [
            *self.prefix, "events", "--format", "json", "--filter", "type=container",
            "--filter", f"label={INSTANCE_LABEL}={instance}", "--since", f"{since:.3f}",
        ]  # fmt: skip

    def parse_event(self, line: str) -> ContainerEvent | None:
        try:
            event = json.loads(line)
        except ValueError:
            return None  # a warning podman printed, say
        if not isinstance(event, dict) or event.get("Type", "container") != "container":
            return None
        task_id = (event.get("Attributes") or {}).get(TASK_LABEL)
        status = event.get("Status", "")
        if not task_id or status not in _COMING | _GOING:
            return None
        return ContainerEvent(task_id, status in _COMING, status, event.get("ID", ""))

    def log_files(self, inspect_output: str) -> dict[str, str]:
        files = {}
        for container in json.loads(inspect_output or "[]") or []:
            log = (container.get("HostConfig") or {}).get("LogConfig") or {}
            if log.get("Type") == "k8s-file" and log.get("Path") and _CONTAINER_ID.fullmatch(container.get("Id", "")):
                files[container["Id"]] = log["Path"]
        return files

    def log_lines(self, data: bytes, lines: int, whole: bool) -> bytes:
        return k8s_file_lines(data, lines, whole)

    def inspect_argv(self, task_id: str) -> list[str]:
        return [*self.prefix, "inspect", "--type", "container", "--format", "json", self.container_name(task_id)]

    def parse_inspect(self, output: str, port: int) -> list[Observation]:
        # Addresses on task networks are only here, not in `ps`.
        observations = []
        for container in json.loads(output or "[]") or []:
            task_id = ((container.get("Config") or {}).get("Labels") or {}).get(TASK_LABEL)
            if not task_id:
                continue
            state = container.get("State") or {}
            seen = _SEEN.get(state.get("Status", ""), Seen.UNKNOWN)
            observations.append(
                Observation(
                    task_id=task_id,
                    state=seen,
                    endpoint=_endpoint(container, port, self.task_networks),
                    exit_code=state.get("ExitCode") if seen is Seen.ENDED else None,
                    backend_state={"container": container.get("Id", "")},
                    image_id=container.get("Image", ""),
                )
            )
        return observations

    def list_argv(self, instance: str) -> list[str]:
        return [*self.prefix, "ps", "--all", "--format", "json", "--filter", f"label={INSTANCE_LABEL}={instance}"]

    def parse_list(self, output: str) -> list[Observation]:
        observations = []
        for container in json.loads(output or "[]") or []:
            task_id = (container.get("Labels") or {}).get(TASK_LABEL)
            if not task_id:
                continue
            seen = _SEEN.get(container.get("State", ""), Seen.UNKNOWN)
            port = _loopback_port(container.get("Ports") or [])
            observations.append(
                Observation(
                    task_id=task_id,
                    state=seen,
                    endpoint=("127.0.0.1", port) if port else None,
                    exit_code=container.get("ExitCode") if seen is Seen.ENDED else None,
                    backend_state={"container": container.get("Id", "")},
                    image_id=container.get("ImageID", ""),
                )
            )
        return observations

    def stop_argv(self, task_id: str, grace_seconds: int) -> list[str]:
        return [*self.prefix, "stop", "--ignore", "--time", str(grace_seconds), self.container_name(task_id)]

    def stopped_one(self, result: CommandResult) -> bool:
        return result.ok and result.stdout.strip() != ""  # `stop --ignore` names what it stopped

    def removal_pending(self, result: CommandResult) -> bool:
        # With user namespaces, podman's own clean-up after a stop may still hold the mounts.
        return "device or resource busy" in result.stderr

    def removed(self, result: CommandResult) -> bool:
        return result.ok  # `rm --ignore` succeeds when there is nothing to remove

    def remove_argv(self, task_id: str) -> list[str]:
        return [*self.prefix, "rm", "--force", "--ignore", "--time", "0", self.container_name(task_id)]

    def version_argv(self) -> list[str]:
        return [*self.prefix, "version", "--format", "{{.Client.Version}}"]


def k8s_file_lines(data: bytes, lines: int, whole: bool) -> bytes:
    """The output in the last ``lines`` lines of a k8s-file log (podman's log file): one record
    a line, ``TIME STREAM TAG TEXT``, where the tag P marks a part of a line that the next
    record goes on with (F: the line ends there). ``data`` may begin inside a record unless
    ``whole``: that first record is left out."""
    records = data.split(b"\n")
    if not whole:
        records = records[1:]
    output: list[bytes] = []
    ended = 0
    for record in reversed(records):
        fields = record.split(b" ", 3)
        if len(fields) < 3:
            continue  # the empty piece after the last newline, or a record cut short
        partial = b"P" in fields[2].split(b":")
        if not partial:
            if ended == lines:
                break
            ended += 1
        output.append((fields[3] if len(fields) == 4 else b"") + (b"" if partial else b"\n"))
    return b"".join(reversed(output))


def _scratch_home(spec: ContainerSpec) -> list[str]:
    """A private tmpfs home, owned by whoever the image runs as; none when a storage is the home."""
    return [] if spec.home_mount else ["--tmpfs", f"{spec.home}:rw,size={spec.memory_mb}m,U"]


def _mounts(spec: ContainerSpec) -> list[str]:
    return bind_mounts(spec, "destination", "ro=true")


def _tls(spec: ContainerSpec) -> list[str]:
    # The platform's registry speaks plain HTTP; what is pulled is checked against its digest.
    return ["--tls-verify=false"] if spec.insecure_pull else []


def _endpoint(container: dict, port: int, on_task_network: bool) -> tuple[str, int] | None:
    if not on_task_network:
        ports = ((container.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
        published = [p for p in ports if p.get("HostIp") in ("127.0.0.1", "") and p.get("HostPort")]
        return ("127.0.0.1", int(published[0]["HostPort"])) if published else None
    networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
    address = next((network.get("IPAddress") for network in networks.values() if network.get("IPAddress")), None)
    return (address, port) if address else None


def _loopback_port(ports: list[dict]) -> int | None:
    for port in ports:
        if port.get("host_ip") in ("127.0.0.1", "") and port.get("host_port"):
            return int(port["host_port"])
    return None


def local_containers_conf(closed: bool = False) -> Path:
    """Podman settings this machine needs, written fresh on every start.

    runc instead of crun (crun refuses hybrid cgroup hosts), ulimits no higher than our own
    hard limit (podman's default raises RLIMIT_NOFILE, which fails where root may not), and
    the address pool task networks come from: the open one, or with ``closed`` the one whose
    networks the firewall keeps from reaching other machines. Networks are netavark's: with
    CNI, every podman command ran four plugin programs per network that existed, so a burst
    of 100 tasks spent most of its time there (~1 s per command at 100 networks).
    """
    hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)[1]
    nofile = "" if hard == rlimit.RLIM_INFINITY else f'"nofile={hard}:{hard}", '
    lines = ["[containers]", f'default_ulimits = [{nofile}"nproc=32768:32768"]']
    if shutil.which("runc"):
        lines += ["[engine]", 'runtime = "runc"']
    pool = firewall.CLOSED_POOL if closed else firewall.OPEN_POOL
    lines += ["[network]", 'network_backend = "netavark"']
    lines += [f'default_subnet_pools = [{{"base" = "{pool}", "size" = {firewall.NETWORK_PREFIX}}}]']
    path = home() / "podman" / ("containers-closed.conf" if closed else "containers.conf")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _podman(resource) -> PodmanEngine:
    if not transport_is_local(resource.transport):
        return PodmanEngine()  # rootless, as the account: published on the host's loopback
    # This machine's podman needs settings of its own (see local_containers_conf). Run by root,
    # it gives every task a network and a user namespace of its own (see rosetta.computing.firewall).
    rootful = os.geteuid() == 0
    return PodmanEngine(
        containers_conf=str(local_containers_conf()),
        closed_containers_conf=str(local_containers_conf(closed=True)),
        task_networks=rootful,
        user_namespaces=rootful,
    )


KIND = Kind("engine", "podman", "Podman", _podman)
