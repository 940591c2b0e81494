"""Usage accounting: CPU-hours and memory-hours per user, group and resource over a period, from
tasks' sizes and the time they held them (from their interface's first answer to their end, or
now for a task still running), clipped to the period."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from rosetta.tasks.models import Task

BY = ("user", "group", "resource")


@dataclass
class Use:
    tasks: int = 0
    hours: float = 0.0
    cpu_hours: float = 0.0
    memory_gib_hours: float = 0.0

    def add(self, hours: float, cpus: float, memory_mb: int) -> None:
        self.tasks += 1
        self.hours += hours
        self.cpu_hours += cpus * hours
        self.memory_gib_hours += memory_mb / 1024 * hours


def usage(since: datetime, by: str, until: datetime | None = None) -> dict[str, Use]:
    """What was used from ``since`` to ``until`` (now), by user, group (each of a user's groups
    counts their tasks) or resource, the largest first."""
    if by not in BY:
        raise ValueError(f"Usage is counted by {', '.join(BY)}.")
    until = until or timezone.now()
    tasks = (
        Task.objects.filter(started__isnull=False, started__lt=until)
        .filter(Q(finished__isnull=True) | Q(finished__gt=since))
        .select_related("owner", "resource")
        .prefetch_related("owner__groups")
        .only("cpus", "memory_mb", "started", "finished", "owner__username", "resource__name")
    )
    totals: dict[str, Use] = defaultdict(Use)
    for task in tasks.iterator(chunk_size=2000):
        held = (min(task.finished or until, until) - max(task.started, since)).total_seconds() / 3600
        if held <= 0:
            continue
        for key in _keys(task, by):
            totals[key].add(held, task.cpus, task.memory_mb)
    return dict(sorted(totals.items(), key=lambda item: (-item[1].cpu_hours, item[0])))


def _keys(task: Task, by: str) -> list[str]:
    if by == "user":
        return [task.owner.get_username()]
    if by == "resource":
        return [task.resource.name]
    return [group.name for group in task.owner.groups.all()] or ["(no group)"]
