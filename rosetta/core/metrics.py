"""Operators' numbers, in Prometheus' text format (served at /metrics by the web process).

Every process of the platform (web, controller, gateway workers, SSH door, builder) counts into
files of one directory (prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``, set
by rosetta.settings to ``ROSETTA_HOME/run/metrics``); the web process adds them up at each scrape,
with what the database says at that moment (tasks by phase, builds queued, pushes). Labels are
bounded (resource names, a cause's short name, a kind), never free text.
"""

from __future__ import annotations

import os
from pathlib import Path

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # imported before Django's settings (which set it)
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rosetta.settings")
    settings.HOME  # noqa: B018 -- reading the settings sets this home's metrics directory

from prometheus_client import Counter, Gauge, Histogram  # once the directory is known

# The controller (written where a task's phase changes: rosetta.tasks.models.Task.transition).
TASK_STARTS = Counter("rosetta_task_starts", "Tasks whose interface answered for the first time.", ["resource"])
TASK_FAILURES = Counter("rosetta_task_failures", "Tasks that failed, by cause.", ["resource", "cause"])
START_SECONDS = Histogram(
    "rosetta_task_start_seconds",
    "From a task's request until its interface answered.",
    ["resource"],
    buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300, 900, 3600),
)
PASS_SECONDS = Histogram(
    "rosetta_controller_pass_seconds",
    "How long one controller pass over a backend took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
POLL_ERRORS = Counter("rosetta_backend_poll_errors", "Polls of a resource's backend that failed.", ["resource"])

# The gateway and the SSH door (where every byte of every interface passes).
GATEWAY_REQUESTS = Counter("rosetta_gateway_requests", "Requests the gateway answered or relayed.", ["kind"])
GATEWAY_BYTES = Counter("rosetta_gateway_bytes", "Bytes relayed by the gateway.", ["direction"])
OPEN_CONNECTIONS = Gauge(
    "rosetta_gateway_open_connections", "Client connections open at the gateway.", multiprocess_mode="livesum"
)
OPEN_WEBSOCKETS = Gauge(
    "rosetta_gateway_open_websockets", "WebSockets (and other upgraded connections) open.", multiprocess_mode="livesum"
)
DOOR_SESSIONS = Gauge("rosetta_ssh_door_sessions", "SSH sessions open through the door.", multiprocess_mode="livesum")

# The file manager.
STORAGE_BYTES = Counter("rosetta_storage_transfer_bytes", "Bytes uploaded to and downloaded from storages.",
                        ["direction"])  # fmt: skip


def start_afresh() -> None:
    """Forget the files of processes that ran before (`rosetta run` starting every process anew):
    counters start again from zero, which Prometheus reads as a restart."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in Path(directory).glob("*.db"):
            path.unlink(missing_ok=True)


def cause_of(error: BaseException | None, fallback: str = "other") -> str:
    """A failure's cause as a label: the error's class in snake case (``Unreachable`` → ``unreachable``)."""
    if error is None:
        return fallback
    name = type(error).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))
