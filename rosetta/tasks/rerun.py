"""Running a task's record again: exactly that software entry with exactly that image digest, the
same request, on the same resource or one chosen — or a plain refusal that says why and offers
the newest version of the same software, never another image in silence."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q

from rosetta.catalog.models import Software
from rosetta.core.errors import Conflict, NotFound
from rosetta.tasks.models import Task
from rosetta.tasks.records import REDACTED
from rosetta.tasks.services import TaskRequest, start_task


def request_from_record(user, record: dict, on: str | None = None) -> tuple[TaskRequest, list[str]]:
    """The request a record describes (``on``: another resource), and the names of environment
    variables whose values the record left out (secrets: the new task runs without them)."""
    try:
        software, request = record["software"], record["request"]
        resource = on or record["resource"]["name"]
        environment = dict(request["environment"])
        storages = [
            f"{mount['storage']}:{mount['mount_point']}" for mount in request["storages"] if mount.get("storage")
        ]
        fields = {"cpus": float(request["cpus"]), "memory_mb": int(request["memory_mb"])}
        options = dict(request.get("scheduler_options") or {})
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValidationError(
            f"This is not a task record of Rosetta (`rosetta task record --json` makes one): {error!r} is wrong."
        ) from None
    entry = recorded_entry(user, software)
    left_out = sorted(name for name, value in environment.items() if value == REDACTED)
    kept = {name: value for name, value in environment.items() if value != REDACTED}
    request = TaskRequest(software=entry.name, software_id=entry.pk, resource=resource, environment=kept,
                          scheduler_options=options, storages=storages, **fields)  # fmt: skip
    return request, left_out


def start_from_record(user, record: dict, on: str | None = None) -> Task:
    """Start the record's task again, saying so (and what was left out) in the new task's events."""
    request, left_out = request_from_record(user, record, on)
    task = start_task(user, request)
    said = f"Run again from the record of task {record['task'].get('id', '?')} ({request.software}, same image)."
    if left_out:
        said += f" Not set, their values were not recorded: {', '.join(left_out)}."
    task.add_event(said)
    return task


def recorded_entry(user, software: dict) -> Software:
    """The entry the record ran, if it still runs the recorded digest; else Conflict/NotFound
    naming what changed and the newest version of that software the user may start."""
    name, version, digest = software.get("name"), software.get("version"), software.get("digest")
    owner = software.get("owner")
    whose = Q(owner__isnull=True) if owner is None else Q(owner__username=owner)
    entry = Software.objects.visible_to(user).filter(whose, name=name, version=version).first()
    if entry is None:
        raise NotFound(f"{name}:{version} is not in your catalogue any more.{_offer(user, name)}")
    if entry.status == "retired":
        raise Conflict(f"{name}:{version} is retired: it cannot run again.{_offer(user, name)}")
    if digest and digest not in {entry.digest, entry.image_digest, entry.registry_digest}:
        raise Conflict(
            f"The image of {name}:{version} is no longer the one recorded (recorded {digest}, now "
            f"{entry.digest or 'none'}): Rosetta does not run another image in its place.{_offer(user, name)}"
        )
    return entry


def _offer(user, name: str) -> str:
    newest = Software.objects.visible_to(user).startable().filter(name=name).order_by("-created").first()
    if newest is None:
        return ""
    return f" The newest version you may start is {newest.reference} (`rosetta task start {newest.reference}`)."
