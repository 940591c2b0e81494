"""What users can ask of tasks. Views and API endpoints are thin wrappers around these.

These functions only write desired state; the controller does the rest. Each change is one
transaction, and the processes that act on it are woken once it has committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from rosetta.accounts.models import SSHKey
from rosetta.catalog.models import Protocol, Software
from rosetta.catalog.registries import check_registry
from rosetta.catalog.services import resolve
from rosetta.computing.models import Resource
from rosetta.computing.services import check_request
from rosetta.core import notify
from rosetta.core.errors import Conflict, NotFound
from rosetta.core.validation import validate_env_vars, validate_task_name
from rosetta.storage import services as storage_services
from rosetta.tasks.models import Task
from rosetta.tasks.phases import ACTIVE_PHASE_NAMES, FINAL_PHASE_NAMES, Desired

MAX_NAME_SUFFIX = 1000
NO_SSH_KEY = (
    "You have no SSH key registered, so nobody can log in to this task. Add your public key "
    "(Account page, or `rosetta keys add ~/.ssh/id_ed25519.pub`), then start a new task: "
    "a task accepts the keys registered when it starts."
)


@dataclass
class TaskRequest:
    software: str  # [OWNER/]NAME[:VERSION] (rosetta.catalog.services.resolve)
    resource: str
    version: str | None = None
    software_id: int | None = None  # the exact entry (the web form's choice), instead of a name
    name: str | None = None
    cpus: float = 1.0
    memory_mb: int = 512
    environment: dict[str, str] = field(default_factory=dict)
    partition: str = ""  # batch schedulers only
    time_limit_minutes: int = 0  # batch schedulers only; 0: the resource's default
    storages: list[str] | None = None  # storages to mount; None: the software's defaults


def start_task(user, request: TaskRequest) -> Task:
    software = _software_for(user, request)
    check_registry(software.image)  # the operator's list may have changed since it was added
    resource = Resource.objects.filter(name=request.resource, enabled=True).first()
    if resource is None:
        raise NotFound(f"There is no computing resource called {request.resource!r}.")
    check_request(resource, request.cpus, request.memory_mb, request.partition, request.time_limit_minutes)
    validate_env_vars(request.environment)
    if request.name is not None:
        validate_task_name(request.name)
    with transaction.atomic():
        task = _create_with_unique_name(user, software, resource, request)
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


def _wake_for(task: Task) -> None:
    notify.after_commit(notify.CONTROLLER, str(task.resource_id))


def _create_with_unique_name(user, software, resource, request: TaskRequest) -> Task:
    fields = dict(
        owner=user,
        software=software,
        # What the engine there runs: this machine's image, or elsewhere the registry's copy.
        software_digest=software.image_digest if resource.transport == "local" else software.digest,
        resource=resource,
        cpus=request.cpus,
        memory_mb=request.memory_mb,
        environment=request.environment,
        partition=request.partition,
        time_limit_minutes=request.time_limit_minutes,
    )
    if request.name is not None:
        try:
            with transaction.atomic():
                return Task.objects.create(name=request.name, **fields)
        except IntegrityError:
            raise Conflict(f"You already have a task called {request.name!r}.") from None
    for suffix in range(1, MAX_NAME_SUFFIX):
        name = software.name if suffix == 1 else f"{software.name}-{suffix}"
        if not Task.objects.filter(owner=user, name=name).exists():
            try:
                with transaction.atomic():
                    return Task.objects.create(name=name, **fields)
            except IntegrityError:
                continue  # taken by a concurrent request; try the next suffix
    raise ValidationError("Could not find a free task name; please give one.")


def tasks_of(user):
    queryset = Task.objects.select_related("software", "resource", "owner")
    return queryset if user.is_staff else queryset.filter(owner=user)


def task_list_of(user):
    """For listings: without the kept log tails, which can be large."""
    return tasks_of(user).defer("log_tail", "environment")


def get_task(user, task_id: str) -> Task:
    """The task if ``user`` may see it. Others' tasks are reported as missing, not forbidden,
    so that task ids cannot be probed."""
    task = tasks_of(user).filter(pk=task_id).first()
    if task is None:
        raise NotFound(f"There is no task {task_id!r}.")
    return task


def request_stop(task: Task) -> None:
    with transaction.atomic():
        if Task.objects.filter(pk=task.pk, desired=Desired.RUNNING.value, phase__in=ACTIVE_PHASE_NAMES).update(
            desired=Desired.STOPPED.value
        ):
            task.desired = Desired.STOPPED.value
            task.add_event("Stop requested.")
            _wake_for(task)


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
