"""Quotas: how much of a resource a user, or a group's members together, may use at once.

A start is checked in the transaction that creates the task, after locking the quotas that
apply (SELECT … FOR UPDATE on PostgreSQL; SQLite's transactions take the write lock at their
start): concurrent starts that share a quota are counted one after the other, so a burst never
gets past it. What a quota counts is the active tasks (not ended) of its holder.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.db.models import Count, Q, Sum

from rosetta.computing.models import Resource
from rosetta.core.errors import Conflict
from rosetta.core.units import format_memory
from rosetta.tasks.models import Quota, Task
from rosetta.tasks.phases import FINAL_PHASE_NAMES


class OverQuota(Conflict):
    """A start refused because it would take its holder over a quota (409, naming it)."""


@dataclass(frozen=True)
class Usage:
    tasks: int = 0
    cpus: float = 0.0
    memory_mb: int = 0

    def plus(self, cpus: float, memory_mb: int) -> Usage:
        return Usage(self.tasks + 1, self.cpus + cpus, self.memory_mb + memory_mb)


def applying_to(user, resource: Resource):
    """The quotas a start by ``user`` on ``resource`` must fit: the user's and their groups', for
    that resource and for all resources."""
    return Quota.objects.filter(
        Q(user=user) | Q(group__in=user.groups.all()), Q(resource=resource) | Q(resource__isnull=True)
    ).select_related("user", "group", "resource")


def usage_of(quota: Quota) -> Usage:
    """What the quota's holder uses now, where the quota counts."""
    tasks = Task.objects.exclude(phase__in=FINAL_PHASE_NAMES)
    tasks = tasks.filter(owner=quota.user_id) if quota.user_id else tasks.filter(owner__groups=quota.group_id)
    if quota.resource_id:
        tasks = tasks.filter(resource=quota.resource_id)
    totals = tasks.aggregate(tasks=Count("id"), cpus=Sum("cpus"), memory_mb=Sum("memory_mb"))
    return Usage(totals["tasks"], totals["cpus"] or 0.0, totals["memory_mb"] or 0)


def check_start(user, resource: Resource, cpus: float, memory_mb: int) -> None:
    """Refuse (Conflict, naming the quota) a start that would take its holder over a quota. Call
    inside the transaction that creates the task."""
    for quota in applying_to(user, resource).select_for_update(of=("self",)).order_by("pk"):
        problem = _over(quota, usage_of(quota), cpus, memory_mb)
        if problem:
            raise OverQuota(f"Over the {quota} ({problem}): stop one of the tasks it counts, or ask an operator.")


def _over(quota: Quota, used: Usage, cpus: float, memory_mb: int) -> str:
    after = used.plus(cpus, memory_mb)
    if quota.max_tasks is not None and after.tasks > quota.max_tasks:
        return f"{used.tasks} of {quota.max_tasks} tasks run already"
    if quota.max_cpus is not None and after.cpus > quota.max_cpus + 1e-9:
        return f"{used.cpus:g} of {quota.max_cpus:g} CPUs in use; this task asks {cpus:g}"
    if quota.max_memory_mb is not None and after.memory_mb > quota.max_memory_mb:
        return (
            f"{format_memory(used.memory_mb)} of {format_memory(quota.max_memory_mb)} memory in use; "
            f"this task asks {format_memory(memory_mb)}"
        )
    return ""


def said(quota: Quota, used: Usage) -> str:
    """A quota with what its holder uses, in words: "2 of 4 tasks, 3 of 8 CPUs"."""
    parts = []
    if quota.max_tasks is not None:
        parts.append(f"{used.tasks} of {quota.max_tasks} tasks")
    if quota.max_cpus is not None:
        parts.append(f"{used.cpus:g} of {quota.max_cpus:g} CPUs")
    if quota.max_memory_mb is not None:
        parts.append(f"{format_memory(used.memory_mb)} of {format_memory(quota.max_memory_mb)} memory")
    return ", ".join(parts) or "no limit"


def standing(user, resource: Resource) -> list[str]:
    """Each quota a start on ``resource`` must fit, with its use now, for the forms and lists."""
    return [f"{said(quota, usage_of(quota))} ({quota})" for quota in applying_to(user, resource).order_by("pk")]


def set_quota(
    *, user=None, group: Group | None = None, resource: Resource | None = None,
    tasks: int | None = None, cpus: float | None = None, memory_mb: int | None = None,
) -> Quota:  # fmt: skip
    """Make or change the quota of a user or a group, on a resource or on all of them."""
    if (user is None) == (group is None):
        raise ValueError("A quota is for a user or for a group.")
    limits = {"max_tasks": tasks, "max_cpus": cpus, "max_memory_mb": memory_mb}
    quota, _ = Quota.objects.update_or_create(user=user, group=group, resource=resource, defaults=limits)
    return quota
