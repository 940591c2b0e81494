"""The docker engine, as reached on a host that runs a docker daemon.

The interface is published on the host's loopback (the platform reaches it through the
resource's SSH connection); tasks run hardened as with podman. Docker's own user-namespace
remapping is the daemon's setting (``userns-remap``), not a per-container flag.
"""

from __future__ import annotations

import json
import re

from rosetta.computing.contract import ContainerSpec, Observation, Seen
from rosetta.computing.engines.base import (
    INSTANCE_LABEL,
    KEPT_CAPABILITIES,
    TASK_LABEL,
    DockerCommandLine,
    bind_mounts,
    hardening,
    labels,
)
from rosetta.computing.kinds import Kind
from rosetta.computing.transports.base import CommandResult

_SEEN = {
    "created": Seen.STARTING,
    "restarting": Seen.STARTING,
    "running": Seen.RUNNING,
    "paused": Seen.UNKNOWN,
    "removing": Seen.ENDED,
    "exited": Seen.ENDED,
    "dead": Seen.ENDED,
}
_IMAGE_MISSING = ("unable to find image", "pull access denied", "manifest unknown", "repository does not exist",
                  "not found: manifest", "no such image")  # fmt: skip
_TRANSIENT = ("is already in use", "cannot connect to the docker daemon", "is the docker daemon running")
_EXITED = re.compile(r"Exited \((-?\d+)\)")
_PUBLISHED = re.compile(r"127\.0\.0\.1:(\d+)->(\d+)/tcp")


class DockerEngine(DockerCommandLine):
    name = "docker"
    transient_words = _TRANSIENT
    image_missing_words = _IMAGE_MISSING
    transient_reason = "docker is busy or not answering; trying again."

    def __init__(self, executable: str = "docker") -> None:
        self.prefix = [executable]

    def run_argv(self, spec: ContainerSpec, env_file: str | None = None) -> list[str]:
        argv = [
            *self.prefix, "run", "--detach", "--name", self.container_name(spec.task_id), *labels(spec),
            *hardening(spec),
            # Docker leaves added capabilities out of a non-root user's sets (unlike podman), and
            # knows fewer names: drop all, add back what a root task may keep.
            "--cap-drop", "ALL", *[word for kept in sorted(KEPT_CAPABILITIES) for word in ("--cap-add", kept)],
            # Docker's tmpfs takes the kernel's options; whoever the image runs as may write there.
            *([] if spec.home_mount else ["--tmpfs", f"{spec.home}:rw,exec,size={spec.memory_mb}m,mode=1777"]),
            # Podman gives a read-only container these by itself; docker leaves them read-only
            # (JupyterLab and the desktop keep their private runtime files under /tmp).
            *[word for path in ("/tmp", "/var/tmp") for word in ("--tmpfs", f"{path}:rw,nosuid,nodev,mode=1777")],
            "--tmpfs", "/run:rw,nosuid,nodev,mode=755",
            "--publish", f"127.0.0.1::{spec.port}",
            f"--pull={spec.pull}",
            *bind_mounts(spec, "target", "readonly"),
        ]  # fmt: skip
        if env_file is not None:
            argv += ["--env-file", env_file]
        return [*argv, spec.image]

    def inspect_argv(self, task_id: str) -> list[str]:
        return [*self.prefix, "inspect", "--type", "container", self.container_name(task_id)]

    def parse_inspect(self, output: str, port: int) -> list[Observation]:
        observations = []
        for container in json.loads(output or "[]") or []:
            task_id = ((container.get("Config") or {}).get("Labels") or {}).get(TASK_LABEL)
            if not task_id:
                continue
            state = container.get("State") or {}
            seen = _SEEN.get(state.get("Status", ""), Seen.UNKNOWN)
            ports = ((container.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
            host_port = next(
                (p["HostPort"] for p in ports if p.get("HostIp") == "127.0.0.1" and p.get("HostPort")), None
            )
            observations.append(
                Observation(
                    task_id=task_id,
                    state=seen,
                    endpoint=("127.0.0.1", int(host_port)) if host_port else None,
                    exit_code=state.get("ExitCode") if seen is Seen.ENDED else None,
                    reason="The program ran out of memory and was killed." if state.get("OOMKilled") else "",
                    backend_state={"container": container.get("Id", "")},
                    image_id=container.get("Image", ""),
                )
            )
        return observations

    def list_argv(self, instance: str) -> list[str]:
        return [*self.prefix, "ps", "--all", "--no-trunc", "--format", "{{json .}}",
                "--filter", f"label={INSTANCE_LABEL}={instance}"]  # fmt: skip

    def parse_list(self, output: str) -> list[Observation]:
        """One JSON object per line; labels and ports come as text there."""
        observations = []
        for line in output.splitlines():
            if not line.strip():
                continue
            container = json.loads(line)
            found = dict(pair.split("=", 1) for pair in (container.get("Labels") or "").split(",") if "=" in pair)
            task_id = found.get(TASK_LABEL)
            if not task_id:
                continue
            seen = _SEEN.get(container.get("State", ""), Seen.UNKNOWN)
            exited = _EXITED.search(container.get("Status", ""))
            published = _PUBLISHED.search(container.get("Ports", ""))
            observations.append(
                Observation(
                    task_id=task_id,
                    state=seen,
                    endpoint=("127.0.0.1", int(published.group(1))) if published else None,
                    exit_code=int(exited.group(1)) if exited and seen is Seen.ENDED else None,
                    backend_state={"container": container.get("ID", "")},
                )
            )
        return observations

    def stop_argv(self, task_id: str, grace_seconds: int) -> list[str]:
        return [*self.prefix, "stop", "--time", str(grace_seconds), self.container_name(task_id)]

    def stopped_one(self, result: CommandResult) -> bool:
        return result.ok

    def remove_argv(self, task_id: str) -> list[str]:
        return [*self.prefix, "rm", "--force", self.container_name(task_id)]

    def removed(self, result: CommandResult) -> bool:
        return result.ok or "no such container" in result.stderr.lower()

    def version_argv(self) -> list[str]:
        return [*self.prefix, "version", "--format", "{{.Server.Version}}"]

    def refusal_text(self, result: CommandResult) -> str:
        return result.stderr or result.error_text()  # docker's reasons may span lines


KIND = Kind("engine", "docker", "Docker", lambda resource: DockerEngine())
