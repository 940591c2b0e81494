"""Memory-limit kills, read from this machine's kernel log.

Podman cannot tell here that a container's process was killed for exceeding its memory limit
(its OOMKilled flag stays false on this cgroup layout), and the container's cgroup with its
counters is gone as soon as the main process dies. The kernel log says it exactly and keeps
saying it: every kill names the memory cgroup whose limit was hit, and container engines put
the container id in that cgroup's path.
"""

from __future__ import annotations

import logging
import os
import re

from rosetta.computing.transports.base import MemoryKills

log = logging.getLogger(__name__)

MAX_CONTAINERS = 4096  # the containers whose kills are remembered: the latest ones (a running task's are)
_KILL = re.compile(r"oom-kill:.*?oom_memcg=(?P<memcg>[^,]*).*?,task=(?P<process>[^,]*),pid=")
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def parse_record(record: str) -> tuple[str, str] | None:
    """(container id, killed process) for a kernel log record about a memory-limit kill."""
    message = record.partition(";")[2]
    match = _KILL.search(message)
    if match is None:
        return None
    container = _CONTAINER_ID.search(match["memcg"])
    return (container.group(), match["process"]) if container else None


class KernelMemoryKills:
    """Counts memory-limit kills per container id, reading only what is new on each call. Only
    the MAX_CONTAINERS containers with the latest kills are remembered: a long-running platform
    sees kills in many containers long gone."""

    def __init__(self, path: str = "/dev/kmsg") -> None:
        self.path = path
        self.fd: int | None = None
        self.unavailable = False
        self.kills: dict[str, MemoryKills] = {}

    def read(self) -> dict[str, MemoryKills] | None:
        if self.unavailable:
            return None
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as error:
                log.warning("cannot read the kernel log (%s): memory-limit kills will not be reported", error)
                self.unavailable = True
                return None
        while True:
            try:
                record = os.read(self.fd, 8192)
            except BlockingIOError:
                break  # read everything there is
            except BrokenPipeError:
                continue  # older records were overwritten before we read them; go on with the next
            if not record:
                break
            # /dev/kmsg gives one record per read; continuation lines (" KEY=value") carry nothing we need.
            for line in record.decode(errors="replace").splitlines():
                if not line.startswith(" "):
                    self._count(line)
        return dict(self.kills)

    def _count(self, record: str) -> None:
        parsed = parse_record(record)
        if parsed is None:
            return
        container, process = parsed
        before = self.kills.pop(container, None)  # put back last: the oldest are forgotten first
        self.kills[container] = MemoryKills((before.count if before else 0) + 1, process)
        if len(self.kills) > MAX_CONTAINERS:
            del self.kills[next(iter(self.kills))]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
