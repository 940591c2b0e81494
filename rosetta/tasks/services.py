"""What users can ask of tasks. Views and API endpoints are thin wrappers around these.

These functions only write desired state; the controller does the rest. Each change is one
transaction, and the processes that act on it are woken once it has committed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime

import asyncssh
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from rosetta.accounts.models import SSHKey
from rosetta.catalog.models import Protocol, Software
from rosetta.catalog.registries import check_registry
from rosetta.catalog.services import resolve
from rosetta.computing.models import Resource, SSHIdentity
from rosetta.computing.services import check_request, scheduler_request
from rosetta.core import notify
from rosetta.core.choices import choices_said
from rosetta.core.errors import Conflict, NotFound
from rosetta.core.validation import validate_env_vars, validate_task_name
from rosetta.storage import services as storage_services
from rosetta.tasks import quotas
from rosetta.tasks.models import Task, TaskEvent
from rosetta.tasks.phases import ACTIVE_PHASE_NAMES, FINAL_PHASE_NAMES, Desired, Phase

MAX_NAME_SUFFIX = 1000
NO_SSH_KEY = (
    "You have no SSH key registered, so nobody can log in to this task. Add your public key "
    "(Account page, or `rosetta keys add ~/.ssh/id_ed25519.pub`), then start a new task: "
    "a task accepts the keys registered when it starts."
)


@dataclass
class TaskRequest:
    software: str  # [OWNER/]NAME[:VERSION] (rosetta.catalog.services.resolve)
    resource: str | None = None  # None: the default resource (see default_resource)
    version: str | None = None
    software_id: int | None = None  # the exact entry (the web form's choice, a relaunch), instead of a name
    name: str | None = None
    cpus: float = 1.0
    memory_mb: int = 512
    environment: dict[str, str] = field(default_factory=dict)
    # What the task asks of a batch scheduler (partition, time limit...): the kind's request options.
    scheduler_options: dict = field(default_factory=dict)
    storages: list[str] | None = None  # storages to mount, NAME or NAME:MOUNT; None: the software's defaults

    @classmethod
    def again(cls, task: Task) -> TaskRequest:
        """The request that made ``task``: same software, resource, size, environment, name (and batch
        options where there is a batch scheduler: tasks from before they were refused elsewhere kept them)."""
        batch = task.resource.is_batch
        return cls(
            software=task.software.name,
            software_id=task.software_id,  # the very entry, not the newest of its name
            resource=task.resource.name,
            name=task.name,
            cpus=task.cpus,
            memory_mb=task.memory_mb,
            environment=dict(task.environment),
            scheduler_options=dict(task.scheduler_options) if batch else {},
            storages=[_mounted_as(mount) for mount in task.mounts.all() if mount.storage is not None],
        )


def _mounted_as(mount) -> str:
    """How a request names one of its task's mounts: the storage, and where if not its own mount point."""
    storage = mount.storage
    return storage.name if mount.target == storage.target else f"{storage.name}:{mount.target}"


def start_task(user, request: TaskRequest) -> Task:
    software = _software_for(user, request)
    check_registry(software.image)  # the operator's list may have changed since it was added
    resource = _resource(request.resource)
    asked = scheduler_request(resource, request.scheduler_options)
    check_request(resource, request.cpus, request.memory_mb, asked)
    if resource.per_user:
        SSHIdentity.of(user).account()  # refused (409) while another user holds that account's name too
    validate_env_vars(request.environment)
    if request.name is not None:
        validate_task_name(request.name)
    with transaction.atomic():
        quotas.check_start(user, resource, request.cpus, request.memory_mb)  # counted one start at a time
        task = _create_with_unique_name(user, software, resource, request, asked)
        mounts = storage_services.attach(task, user, request.storages)
        mounted = f"; storages: {', '.join(map(storage_services.describe, mounts))}" if mounts else ""
        task.add_event(
            f"Requested {software.name} on {resource.name} with {task.cpus:g} CPU and {task.memory_mb} MiB"
            f" (version {software.version}){mounted}."
        )
        if software.interface_protocol == Protocol.SSH and not SSHKey.objects.filter(user=user).exists():
            task.add_event(NO_SSH_KEY)
        _wake_for(task)
        notify.after_commit(notify.GATEWAY)  # its origin says "created" from the start, not "no such task"
    return task


def _software_for(user, request: TaskRequest) -> Software:
    if request.software_id is not None:
        software = Software.objects.visible_to(user).startable().filter(pk=request.software_id).first()
        if software is None:
            raise NotFound("That software is not in your catalogue, or is retired.")
        return software
    return resolve(user, request.software, request.version)


def _choices(queryset, what: str) -> str:
    return choices_said(queryset.values_list("name", flat=True), what)


def default_resource() -> Resource | None:
    """Where a task runs when its request names no resource: the only enabled resource, or
    the one called `local` (this machine) among several."""
    enabled = list(Resource.objects.filter(enabled=True).order_by("name")[:50])
    if len(enabled) == 1:
        return enabled[0]
    return next((resource for resource in enabled if resource.name == "local"), None)


def _resource(name: str | None) -> Resource:
    enabled = Resource.objects.filter(enabled=True)
    resource = default_resource() if name is None else enabled.filter(name=name).first()
    if resource is None:
        said = (
            "No resource was named and there is no default"
            if name is None
            else (f"There is no computing resource called {name!r}")
        )
        raise NotFound(f"{said}{_choices(enabled, 'enabled resource')}.")
    return resource


def relaunch(user, task: Task) -> Task:
    """Start the same request again, under the same name; the finished task stays as it was."""
    if not task.is_final:
        raise Conflict(f"Task {task.name!r} is still {task.phase}; stop it before relaunching it.")
    if Task.objects.filter(owner=task.owner, name=task.name).exclude(phase__in=FINAL_PHASE_NAMES).exists():
        raise Conflict(f"Task {task.name!r} has been relaunched already.")
    return start_task(task.owner if user.is_staff else user, TaskRequest.again(task))


def _wake_for(task: Task) -> None:
    notify.after_commit(notify.CONTROLLER, str(task.resource_id))


def _create_with_unique_name(user, software, resource, request: TaskRequest, asked: dict) -> Task:
    fields = dict(
        owner=user,
        software=software,
        # What the engine there runs: this machine's image, or elsewhere the registry's copy.
        # One digest users can compare with the catalogue's: the platform registry's manifest digest
        # once the image is copied there (the very image this machine runs), else the local image's.
        software_digest=software.digest,
        resource=resource,
        cpus=request.cpus,
        memory_mb=request.memory_mb,
        environment=request.environment,
        scheduler_options=asked,
    )
    if request.name is not None:
        try:
            with transaction.atomic():
                return Task.objects.create(name=request.name, **fields)
        except IntegrityError:
            raise Conflict(f"You already have an active task called {request.name!r}.") from None
    active = Task.objects.filter(owner=user).exclude(phase__in=FINAL_PHASE_NAMES)
    for suffix in range(1, MAX_NAME_SUFFIX):
        name = software.name if suffix == 1 else f"{software.name}-{suffix}"
        if not active.filter(name=name).exists():
            try:
                with transaction.atomic():
                    return Task.objects.create(name=name, **fields)
            except IntegrityError:
                continue  # taken by a concurrent request; try the next suffix
    raise ValidationError("Could not find a free task name; please give one.")


def digest_kind(task: Task) -> str:
    """Which digest the task shows: ``registry`` (the manifest digest the platform's registry
    holds, as the catalogue shows it), ``local`` (this machine's image, not copied there yet), or
    "" when none was recorded (an image of another registry)."""
    if not task.software_digest:
        return ""
    software = task.software
    local = task.software_digest == software.image_digest and task.software_digest != software.registry_digest
    return "local" if local else "registry"


def time_left(task: Task) -> int | None:
    """Seconds before a batch job's time limit ends the task, while it starts or runs."""
    ends_at = (task.backend_state or {}).get("ends_at")
    if task.is_final or not ends_at:
        return None
    try:
        seconds = (datetime.fromisoformat(ends_at) - timezone.now()).total_seconds()
    except (TypeError, ValueError):  # not a time, or one without its zone
        return None
    return max(0, int(seconds))


# The line the built-in ssh image prints when its sshd starts (images/ssh: rosetta-sshd).
HOST_KEY_LINE = re.compile(rb"^rosetta-sshd: host key (\S+ \S+)[^\n]*\n", re.MULTILINE)
HOST_KEY_SEARCH_BYTES = 64 * 1024  # it is among the first lines
HOST_KEY_SEARCH_SECONDS = 5.0  # a page waits no longer for a slow resource


def ssh_host_key_fingerprint(task: Task) -> str | None:
    """The SHA256 fingerprint of the host key an SSH task's server printed when it started (the
    key ssh asks about on the first connection), or None when the task printed none (yet)."""
    if task.software.interface_protocol != Protocol.SSH or task.phase not in (Phase.STARTING, Phase.RUNNING):
        return None
    line = async_to_sync(_host_key_line)(task)
    try:
        return asyncssh.import_public_key(line).get_fingerprint("sha256") if line else None
    except (asyncssh.KeyImportError, ValueError):
        return None


async def _host_key_line(task: Task) -> bytes | None:
    from rosetta.tasks.logs import stream_logs

    async def search() -> bytes | None:
        seen = b""
        chunks = stream_logs(task, follow=False)
        try:
            async for chunk in chunks:
                seen += chunk
                found = HOST_KEY_LINE.search(seen)
                if found or len(seen) > HOST_KEY_SEARCH_BYTES:
                    return found.group(1) if found else None
        finally:
            await chunks.aclose()
        return None

    try:
        return await asyncio.wait_for(search(), HOST_KEY_SEARCH_SECONDS)
    except TimeoutError:
        return None


def tasks_of(user):
    # The latest word in the current phase: why it failed, what it waits for; and, for a task
    # someone else stopped (staff, or a deactivation), what they said, which the owner is shown.
    latest = TaskEvent.objects.filter(task=OuterRef("pk"), phase=OuterRef("phase")).order_by("-time", "-id")
    stopped_by_others = TaskEvent.objects.filter(
        Q(reason__startswith=STAFF_STOP) | Q(reason=DEACTIVATED), task=OuterRef("pk")
    ).order_by("-time", "-id")
    queryset = Task.objects.select_related("software", "resource", "owner").annotate(
        reason=Subquery(latest.values("reason")[:1]),
        reason_detail=Subquery(latest.values("detail")[:1]),
        stopped_because=Subquery(stopped_by_others.values("reason")[:1]),
    )
    return queryset if user.is_staff else queryset.filter(owner=user)


def task_list_of(user):
    """For listings: without the kept log tails, which can be large."""
    return tasks_of(user).defer("log_tail", "environment")


def filter_by_phase(queryset, phase: str):
    """``active``, ``finished``, one phase's name, or ``all``."""
    if phase == "active":
        return queryset.exclude(phase__in=FINAL_PHASE_NAMES)
    if phase == "finished":
        return queryset.filter(phase__in=FINAL_PHASE_NAMES)
    return queryset if phase == "all" else queryset.filter(phase=phase)


def get_task(user, task_ref: str) -> Task:
    """The task if ``user`` may see it, by id or by name among the user's own tasks (the
    active one, else the latest). Others' tasks are reported as missing, not forbidden, so
    that task ids cannot be probed."""
    visible = tasks_of(user)
    task = visible.filter(pk=task_ref).first()
    if task is None:
        named = visible.filter(owner=user, name=task_ref)
        task = named.exclude(phase__in=FINAL_PHASE_NAMES).first() or named.order_by("-created").first()
    if task is None:
        raise NotFound(f"There is no task {task_ref!r}.")
    return task


MAX_STOP_REASON = 500
STAFF_STOP = "Stop requested by staff"


def stops_anothers_task(user, task: Task) -> bool:
    """Whether ``user`` stopping ``task`` is staff stopping someone else's: they must say why."""
    return user is not None and user.is_staff and task.owner_id != user.pk


def request_stop(task: Task, by=None, reason: str = "") -> bool:
    """Ask the controller to stop ``task``; whether this request is the one that did. Staff who
    stop another user's task give a reason, which the owner reads in the task's events."""
    reason = " ".join(reason.split())[:MAX_STOP_REASON]
    if stops_anothers_task(by, task):
        if not reason:
            raise ValidationError(
                f"Say why you stop {task.owner.get_username()}'s task {task.name}: they see the reason on the task."
            )
        said = f"{STAFF_STOP} ({by.get_username()}): {reason}"
    else:
        said = f"Stop requested: {reason}" if reason else "Stop requested."
    return _stop(task, said)


def _stop(task: Task, said: str) -> bool:
    with transaction.atomic():
        if Task.objects.filter(pk=task.pk, desired=Desired.RUNNING.value, phase__in=ACTIVE_PHASE_NAMES).update(
            desired=Desired.STOPPED.value
        ):
            task.desired = Desired.STOPPED.value
            task.add_event(said if said.endswith((".", "!", "?")) else f"{said}.")
            _wake_for(task)
            return True
    return False


DEACTIVATED = "Stopped because the account was deactivated by staff."


def stop_tasks_of(user, said: str = DEACTIVATED) -> int:
    """Stop every active task of ``user`` (their account is deactivated); how many."""
    active = Task.objects.filter(owner=user, desired=Desired.RUNNING.value, phase__in=ACTIVE_PHASE_NAMES)
    return sum(_stop(task, said) for task in active.select_related("resource"))


def request_delete(task: Task) -> None:
    """Final tasks go at once; active ones are stopped by the controller, then forgotten."""
    with transaction.atomic():
        if Task.objects.filter(pk=task.pk, phase__in=FINAL_PHASE_NAMES).delete()[0]:
            notify.after_commit(notify.GATEWAY)
        elif (
            Task.objects.filter(pk=task.pk).exclude(desired=Desired.DELETED.value).update(desired=Desired.DELETED.value)
        ):
            task.desired = Desired.DELETED.value
            task.add_event("Deletion requested: the task is stopped first.")
            _wake_for(task)


def delete_finished(user) -> int:
    """Forget every finished task of ``user`` at once; how many there were."""
    with transaction.atomic():
        deleted = Task.objects.filter(owner=user, phase__in=FINAL_PHASE_NAMES).delete()[1].get("tasks.Task", 0)
        if deleted:
            notify.after_commit(notify.GATEWAY)
    return deleted
