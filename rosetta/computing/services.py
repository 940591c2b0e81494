"""What operators do with computing resources: add, edit, check, disable.

A check is how an operator verifies a machine before users see it: each kind adds its part
(rosetta.computing.kinds): the transport connects, shows (and on request pins) an SSH host key's
fingerprint, the engine says its version, a batch scheduler lists its partitions with their
limits. What it finds is kept on the resource (``facts``): the forms and the API validate task
requests against those limits before anything is submitted.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import asyncssh
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from rosetta.computing import kinds
from rosetta.computing.backends import backend_for
from rosetta.computing.errors import ComputingError
from rosetta.computing.models import Resource
from rosetta.core import notify
from rosetta.core.errors import Conflict

EDITABLE = (
    "description", "transport", "scheduler", "engine", "pull_policy", "max_cpus", "max_memory_mb", "task_outbound",
    "enabled", "host", "port", "credentials", "username", "work_dir", "node",
    "transport_options", "scheduler_options", "engine_options",
)  # fmt: skip


def save_resource(resource: Resource, private_key: str | None = None, **fields) -> Resource:
    """Create or change a resource; what changes its machinery is refused while tasks run on it.
    A setting that is no field of the resource is an option of one of its kinds (a Slurm
    resource's ``partition``): it goes to that kind's options."""
    options = {name: fields.pop(name) for name in list(fields) if name not in EDITABLE}
    before = resource.backend_key() if resource.pk and not resource.per_user else None
    kinds_before = {role: getattr(resource, role) for role in kinds.ROLES}
    for name, value in fields.items():
        setattr(resource, name, value)
    for role in kinds.ROLES:
        if getattr(resource, role) != kinds_before[role] and f"{role}_options" not in fields:
            setattr(resource, f"{role}_options", {})  # another kind: the old one's options mean nothing to it
    _place_options(resource, options)
    if private_key:
        try:
            resource.set_private_key(private_key)
        except (ValueError, asyncssh.KeyImportError) as error:
            raise ValidationError(f"The private key cannot be read: {error}") from None
    if not resource.is_local:
        resource.node = ""  # every machine's controller may drive it (one at a time: rosetta.tasks.leadership)
    elif not resource.node:
        resource.node = settings.NODE  # "this machine": the one whose operator made it
    _validate(resource)
    if (
        before is not None
        and before != resource.backend_key()
        and resource.tasks.filter(finished__isnull=True).exists()
    ):
        raise Conflict(f"Tasks run on {resource.name}: stop them before changing where or how it runs them.")
    try:
        with transaction.atomic():
            resource.save()
            notify.after_commit(notify.CONTROLLER)
            notify.after_commit(notify.GATEWAY)
    except IntegrityError:
        raise Conflict(f"There is already a resource called {resource.name!r}.") from None
    return resource


def _place_options(resource: Resource, options: dict) -> None:
    """Each option to the resource's kind whose schema has it; one no kind there has is refused."""
    unknown = []
    for name, value in options.items():
        role = next((role for role in kinds.ROLES if name in _kind_of(resource, role).options.model_fields), None)
        if role is None:
            unknown.append(name)
            continue
        setattr(resource, f"{role}_options", {**getattr(resource, f"{role}_options"), name: value})
    if unknown:
        raise ValidationError(f"Unknown settings: {', '.join(sorted(unknown))}.")


def _kind_of(resource: Resource, role: str) -> kinds.Kind:
    return kinds.get(role, getattr(resource, role))


def _validate(resource: Resource) -> None:
    combination = kinds.combination(resource.transport, resource.scheduler, resource.engine)
    resource.full_clean(exclude=["private_key", "host_keys", "facts"])
    for role in kinds.ROLES:  # the options first: a kind's judgement of the whole may read them
        options = getattr(combination, role).parse_options(getattr(resource, f"{role}_options"))
        setattr(resource, f"{role}_options", options.model_dump())
    for role in kinds.ROLES:
        kind = getattr(combination, role)
        if kind.validate is not None:
            kind.validate(resource, combination)


@dataclasses.dataclass
class CheckReport:
    resource: str
    reachable: bool
    host_key: str = ""  # the fingerprint the host presented
    pinned: bool = False  # that key is the one Rosetta trusts now
    engine: str = ""  # the engine and its version
    partitions: list[dict] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)


async def check_resource(resource: Resource, pin: bool = False, user=None) -> CheckReport:
    """Connect, read the host key (pin it when asked), ask the engine and the scheduler."""
    report = CheckReport(resource.name, reachable=True)
    transport = _kind_of(resource, "transport")
    if transport.precheck is not None:
        pin_key = (lambda line: sync_to_async(_pin)(resource, line)) if pin else None
        if not await transport.precheck(resource, report, pin_key):
            return report
    if resource.per_user and user is None:  # no account of the platform's own there to try
        await sync_to_async(_remember)(resource, report)
        return report
    backend = await sync_to_async(backend_for)(resource, user)
    scheduler = _kind_of(resource, "scheduler")
    try:
        version = await backend.transport.run(backend.engine.version_argv(), timeout=60)
        report.engine = f"{backend.engine.name} {version.stdout.strip()}" if version.ok else ""
        if not version.ok:
            report.problems.append(f"{backend.engine.name} does not answer there: {version.error_text()}")
        if scheduler.check is not None:
            await scheduler.check(backend, report)
    except ComputingError as error:
        report.reachable = False
        report.problems.append(str(error))
    await sync_to_async(_remember)(resource, report)
    return report


def _pin(resource: Resource, key: str) -> None:
    resource.host_keys = key
    Resource.objects.filter(pk=resource.pk).update(host_keys=resource.host_keys)
    notify.notify(notify.CONTROLLER)
    notify.notify(notify.GATEWAY)


def _remember(resource: Resource, report: CheckReport) -> None:
    facts = {"checked": datetime.now(UTC).isoformat(), "host_key": report.host_key, "engine": report.engine,
             "partitions": report.partitions, "problems": report.problems}  # fmt: skip
    Resource.objects.filter(pk=resource.pk).update(facts=facts)
    resource.facts = facts


def scheduler_request(resource: Resource, asked: dict) -> dict:
    """What a task asks of the resource's scheduler (its options that are set), validated by the
    scheduler kind's request schema: a ValidationError names an option it does not take or a bad
    value. A resource without a batch scheduler takes none: its tasks run until stopped."""
    asked = {name: value for name, value in asked.items() if value not in (None, "", 0)}
    kind = _kind_of(resource, "scheduler")
    if asked and not kind.batch:
        said = [name.removesuffix("_minutes").replace("_", " ") for name in asked]
        others = [name for name in said if name not in ("partition", "time limit")]
        raise ValidationError(
            f"{resource.name} has no batch scheduler: it takes no partition or time limit"
            f"{' nor ' + ' or '.join(others) if others else ''} (its tasks run until stopped). "
            f"Leave out the {' and '.join(said)}, or choose a resource with a batch scheduler."
        )
    request = kinds.parse(kind.request, asked, f"{resource.name}'s scheduler ({kind.label})")
    return request.model_dump(exclude_defaults=True)


def check_request(resource: Resource, cpus: float, memory_mb: int, asked: dict) -> None:
    """Refuse (ValidationError naming the limit) a task request the resource cannot take: its own
    limits, and what its scheduler knows of its own (a cluster's partitions as its last check found them)."""
    resource.check_limits(cpus, memory_mb)
    kind = _kind_of(resource, "scheduler")
    if kind.check_request is not None:
        kind.check_request(resource, cpus, memory_mb, asked)
