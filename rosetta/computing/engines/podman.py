"""The podman engine (rootful or rootless)."""

from __future__ import annotations

import json
import math
import resource as rlimit
import shutil
from pathlib import Path

from rosetta.computing.contract import ContainerSpec, Observation, Seen
from rosetta.computing.engines.base import INSTANCE_LABEL, TASK_LABEL, Engine
from rosetta.computing.errors import ComputingError, ImageMissing, Refused, Unreachable
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


class PodmanEngine(Engine):
    name = "podman"

    def __init__(self, executable: str = "podman", containers_conf: str | None = None) -> None:
        # containers.conf is passed through `env` rather than the process environment so that
        # the same argv works over any transport.
        self.prefix = ["env", f"CONTAINERS_CONF={containers_conf}", executable] if containers_conf else [executable]

    def run_argv(self, spec: ContainerSpec) -> list[str]:
        argv = [
            *self.prefix,
            "run",
            "--detach",
            "--init",  # a PID 1 that forwards signals, else `stop` waits out its whole timeout
            "--name",
            self.container_name(spec.task_id),
            "--label",
            f"{TASK_LABEL}={spec.task_id}",
            "--label",
            f"{INSTANCE_LABEL}={spec.instance}",
            "--publish",
            f"127.0.0.1::{spec.port}",
            "--cpus",
            _format_cpus(spec.cpus),
            "--memory",
            f"{spec.memory_mb}m",
            "--pids-limit",
            "4096",
            f"--pull={spec.pull}",
        ]
        for name, value in spec.env.items():
            # Always NAME=value: a bare NAME (or a glob) would copy the host's variables in.
            argv += ["--env", f"{name}={value}"]
        return [*argv, spec.image]

    def inspect_argv(self, task_id: str) -> list[str]:
        return [*self.prefix, "ps", "--all", "--format", "json", "--filter", f"label={TASK_LABEL}={task_id}"]

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
                    handle={"container": container.get("Id", "")},
                    image_id=container.get("ImageID", ""),
                )
            )
        return observations

    def stop_argv(self, task_id: str, grace_seconds: int) -> list[str]:
        return [*self.prefix, "stop", "--ignore", "--time", str(grace_seconds), self.container_name(task_id)]

    def stopped_one(self, result: CommandResult) -> bool:
        return result.ok and result.stdout.strip() != ""  # `stop --ignore` names what it stopped

    def remove_argv(self, task_id: str) -> list[str]:
        return [*self.prefix, "rm", "--force", "--ignore", "--time", "0", self.container_name(task_id)]

    def logs_argv(self, task_id: str, *, follow: bool, tail: int | None = None) -> list[str]:
        argv = [*self.prefix, "logs"]
        if follow:
            argv.append("--follow")
        if tail is not None:
            argv += ["--tail", str(tail)]
        return [*argv, self.container_name(task_id)]

    def version_argv(self) -> list[str]:
        return [*self.prefix, "version", "--format", "{{.Client.Version}}"]

    def refusal(self, result: CommandResult, spec: ContainerSpec) -> ComputingError:
        raw = result.error_text()
        lowered = raw.lower()
        if any(words in lowered for words in _TRANSIENT):
            return Unreachable("podman is busy with this task's container; trying again.", raw)
        if any(words in lowered for words in _IMAGE_MISSING):
            return ImageMissing(spec.image, raw)
        return Refused("podman refused to start the container.", raw)


def _format_cpus(cpus: float) -> str:
    return str(int(cpus)) if math.isclose(cpus, round(cpus)) else f"{cpus:.2f}"


def _loopback_port(ports: list[dict]) -> int | None:
    for port in ports:
        if port.get("host_ip") in ("127.0.0.1", "") and port.get("host_port"):
            return int(port["host_port"])
    return None


def local_containers_conf() -> Path:
    """Podman settings this machine needs, written fresh on every start.

    runc instead of crun (crun refuses hybrid cgroup hosts), and ulimits no higher than our
    own hard limit (podman's default raises RLIMIT_NOFILE, which fails where root may not).
    """
    hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)[1]
    nofile = "" if hard == rlimit.RLIM_INFINITY else f'"nofile={hard}:{hard}", '
    lines = ["[containers]", f'default_ulimits = [{nofile}"nproc=32768:32768"]']
    if shutil.which("runc"):
        lines += ["[engine]", 'runtime = "runc"']
    path = home() / "podman" / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path
