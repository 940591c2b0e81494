"""A task's record: what it ran, as one document — the software (name, version, image digest;
for a built image its Containerfile and the images it starts FROM), where (resource and its
kind), the request (CPUs, memory, batch options, environment with secret values left out,
storages and their mount points), the interface, the times, how it ended, and Rosetta's version.

A running task's record is made from its row; when a task is deleted its record is kept
(TaskRecord), hidden from lists, until an operator purges it (`rosetta records purge`).
"""

from __future__ import annotations

import re
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from django.contrib.auth import get_user_model
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from rosetta.core.errors import NotFound
from rosetta.tasks.models import Task, TaskRecord

FORMAT = 1
SECRET_NAME = re.compile(
    r"SECRET|TOKEN|PASS|PWD|AUTH|COOKIE|SESSION|CREDENTIAL|PRIVATE|SIGNATURE|CERT|DSN|API_?KEY|ACCESS_?KEY|(^|_)KEY$",
    re.I,
)
CREDENTIALS_IN_URL = re.compile(r"://[^/\s@]*:[^/\s@]*@")  # scheme://user:password@host
REDACTED = "(secret: not recorded)"
FROM_LINE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", re.I | re.M)


def rosetta_version() -> str:
    try:
        return version("rosetta")
    except PackageNotFoundError:
        return "unknown"


def redacted(environment: dict[str, str]) -> dict[str, str]:
    """The environment with the values of names that look secret left out (the names kept), and
    of values that carry a password (a URL with one)."""
    return {
        name: REDACTED if SECRET_NAME.search(name) or CREDENTIALS_IN_URL.search(value) else value
        for name, value in sorted(environment.items())
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def record_of(task: Task) -> dict:
    """The task's record as it stands now."""
    software, resource = task.software, task.resource
    build = getattr(software, "build", None) if software.source == "build" else None
    described = {
        "name": software.name,
        "version": software.version,
        "owner": software.owner.get_username() if software.owner_id else None,
        "image": software.image,
        "digest": task.software_digest,
        "image_id": task.image_id,
    }
    if build is not None:
        described["containerfile"] = build.containerfile
        described["from"] = FROM_LINE.findall(build.containerfile)
    return {
        "record": FORMAT,
        "rosetta": rosetta_version(),
        "task": {"id": task.id, "name": task.name, "owner": task.owner.get_username()},
        "software": described,
        "resource": {
            "name": resource.name,
            "kind": resource.kind,
            "transport": resource.transport,
            "scheduler": resource.scheduler,
            "engine": resource.engine,
        },  # fmt: skip
        "request": {
            "cpus": task.cpus,
            "memory_mb": task.memory_mb,
            "partition": task.partition,
            "time_limit_minutes": task.time_limit_minutes,
            "scheduler_options": task.scheduler_options,  # all the task asked of its scheduler (the kind's options)
            "environment": redacted({**software.environment, **task.environment}),
            "storages": [
                {
                    "storage": mount.storage.name if mount.storage_id else None,
                    "mount_point": mount.target,
                    "read_only": mount.read_only,
                }
                for mount in task.mounts.select_related("storage")
            ],  # fmt: skip
        },
        "interface": {"protocol": software.interface_protocol, "port": software.interface_port},
        "times": {"requested": _when(task.created), "started": _when(task.started), "ended": _when(task.finished)},
        "outcome": {"phase": task.phase, "exit_code": task.exit_code, "reason": _last_reason(task)},
    }


def _last_reason(task: Task) -> str:
    if not task.is_final:
        return ""
    event = task.events.filter(phase=task.phase).order_by("-pk").first()
    return event.reason if event is not None else ""


@receiver(pre_delete, sender=Task, dispatch_uid="keep-task-records")
def keep_record(sender, instance: Task, origin=None, **kwargs) -> None:
    """Deleting a task from the list keeps what it ran (not when its owner's account goes: their
    records go with it)."""
    if isinstance(origin, get_user_model()) or getattr(origin, "model", None) is get_user_model():
        return
    TaskRecord.objects.update_or_create(
        id=instance.id,
        defaults={"owner_id": instance.owner_id, "name": instance.name, "created": instance.created,
                  "document": record_of(instance)},
    )  # fmt: skip


def kept_record(user, task_ref: str) -> TaskRecord:
    """A deleted task's record, by its id or its name (the latest of that name), the user's own
    (staff: anyone's)."""
    records = TaskRecord.objects.all() if user.is_staff else TaskRecord.objects.filter(owner=user)
    found = records.filter(pk=task_ref).first() or records.filter(name=task_ref).order_by("-created").first()
    if found is None:
        raise NotFound(f"You have no task or kept record called {task_ref!r}.")
    return found


def record_for(user, task_ref: str) -> dict:
    """The record of the user's task ``task_ref`` (id or name): live while the task is listed,
    kept once it was deleted."""
    from rosetta.tasks.services import get_task

    try:
        return record_of(get_task(user, task_ref))
    except NotFound:
        return kept_record(user, task_ref).document
