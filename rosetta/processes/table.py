"""The platform's long-running processes, in one table.

`rosetta run` starts them from it (rosetta.processes.run), each is the CLI command `rosetta NAME`,
and each runs on its own as the systemd unit ``rosetta-part@NAME`` (deploy/systemd/): a unit test
(tests/unit/test_process_table.py) keeps the three in agreement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rosetta.processes.checks import NotHere
from rosetta.processes.pusher import pusher_missing
from rosetta.processes.registry import registry_missing
from rosetta.processes.ssh_door import door_off


def runs_anywhere() -> NotHere | None:
    return None


@dataclass(frozen=True)
class Process:
    name: str  # its command, `rosetta NAME`, and its unit, rosetta-part@NAME
    entry: str  # the module with its command (``command``)
    does: str
    needs: str  # what it needs to run, in words
    graceful: bool = False  # replaced without refusing a connection (SIGHUP to `rosetta run`, `systemctl reload`)
    inherits: str | None = None  # the listening sockets `rosetta run` holds for it and hands down (--listen-fds)
    one_machine: bool = False  # runs on one machine of several (its storage is that machine's home)
    not_here: Callable[[], NotHere | None] = runs_anywhere  # why `rosetta run` does not start it (None: it does)


PROCESSES = (
    Process(
        "web", "rosetta.processes.web", "the web UI and REST API, behind the gateway",
        needs="the database; listens on ROSETTA_HOME/run/web.sock, which the gateway connects to",
    ),
    Process(
        "controller", "rosetta.processes.controller", "starts, watches and stops tasks on every resource",
        needs="the database; podman (local resources), SSH keys (remote ones)",
    ),
    Process(
        "gateway", "rosetta.processes.gateway", "the front door: the platform's pages and every task's origin",
        needs="the web process's socket; the HTTP port (--host/--port)", graceful=True, inherits="http",
    ),
    Process(
        "ssh-door", "rosetta.processes.ssh_door", "the SSH front door, a jump host to users' SSH tasks",
        needs="ROSETTA_SSH_PORT (not off) and the door's host key", graceful=True, inherits="ssh", not_here=door_off,
    ),
    Process(
        "builder", "rosetta.processes.builder", "builds users' Containerfiles, one at a time",
        needs="root, podman and the builder image (`rosetta build-image builder`)", one_machine=True,
    ),
    Process(
        "registry", "rosetta.processes.registry", "the platform's image registry, which other machines pull from",
        needs="docker-registry and ROSETTA_REGISTRY_LISTEN (not off)", one_machine=True, not_here=registry_missing,
    ),
    Process(
        "pusher", "rosetta.processes.pusher", "copies catalogue images into the registry",
        needs="the registry, on the same machine", one_machine=True, not_here=pusher_missing,
    ),
)  # fmt: skip
