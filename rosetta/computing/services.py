"""What operators do with computing resources: add, edit, check, disable.

A check is how an operator verifies a machine before users see it: it connects, shows (and on
request pins) the host key's fingerprint, asks the engine its version and, for Slurm, lists
the partitions with their limits. What it finds is kept on the resource (``facts``): the
forms and the API validate task requests against those limits before anything is submitted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import asyncssh
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from rosetta.computing.backends import SCHEDULERS, backend_for
from rosetta.computing.errors import ComputingError
from rosetta.computing.models import Credentials, Resource, SchedulerKind, TransportKind
from rosetta.computing.schedulers.slurm import SlurmScheduler
from rosetta.core import notify
from rosetta.core.errors import Conflict

HOST_KEY_PREFERENCE = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256")  # the strongest first
EDITABLE = (
    "description", "transport", "scheduler", "engine", "pull_policy", "max_cpus", "max_memory_mb", "task_outbound",
    "enabled", "host", "port", "credentials", "username", "work_dir", "partition", "time_limit_minutes", "node",
)  # fmt: skip


def save_resource(resource: Resource, private_key: str | None = None, **fields) -> Resource:
    """Create or change a resource; what changes its machinery is refused while tasks run on it."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationError(f"Unknown settings: {', '.join(sorted(unknown))}.")
    before = resource.backend_key() if resource.pk and not resource.per_user else None
    for name, value in fields.items():
        setattr(resource, name, value)
    if private_key:
        try:
            resource.set_private_key(private_key)
        except (ValueError, asyncssh.KeyImportError) as error:
            raise ValidationError(f"The private key cannot be read: {error}") from None
    if resource.transport != TransportKind.LOCAL:
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


def _validate(resource: Resource) -> None:
    resource.full_clean(exclude=["private_key", "host_keys", "facts"])
    if resource.transport == TransportKind.SSH:
        if not resource.host:
            raise ValidationError("A resource reached over SSH needs a host.")
        if resource.credentials == Credentials.SERVICE and not (resource.username and resource.private_key):
            raise ValidationError("A service account needs a user name and a private key.")
    elif resource.scheduler != "none":
        raise ValidationError("A batch scheduler is reached over SSH (its login node).")
    if resource.scheduler not in SCHEDULERS:
        raise ValidationError(f"The {resource.scheduler} scheduler is not available.")
    if resource.engine == "apptainer" and resource.scheduler != "slurm":
        raise ValidationError("Apptainer runs tasks inside batch jobs only: choose the Slurm scheduler.")


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
    if resource.transport == TransportKind.SSH:
        key = await _host_key(resource, report)
        if key is None:
            return report
        if pin:
            await sync_to_async(_pin)(resource, key)
        report.pinned = key.export_public_key().decode().strip() in resource.host_keys.splitlines()
        if not report.pinned:
            report.problems.append("The host key is not pinned: check it, then pin it (rosetta resources check --pin).")
            return report
        if resource.per_user and user is None:  # no account of the platform's own there to try
            await sync_to_async(_remember)(resource, report)
            return report
    backend = await sync_to_async(backend_for)(resource, user)
    try:
        version = await backend.transport.run(backend.engine.version_argv(), timeout=60)
        report.engine = f"{backend.engine.name} {version.stdout.strip()}" if version.ok else ""
        if not version.ok:
            report.problems.append(f"{backend.engine.name} does not answer there: {version.error_text()}")
        if isinstance(backend, SlurmScheduler):
            report.partitions = [dataclasses.asdict(partition) for partition in await backend.partitions()]
    except ComputingError as error:
        report.reachable = False
        report.problems.append(str(error))
    await sync_to_async(_remember)(resource, report)
    return report


async def _host_key(resource: Resource, report: CheckReport) -> asyncssh.SSHKey | None:
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(resource.host, resource.port, server_host_key_algs=HOST_KEY_PREFERENCE), 15
        )
    except (OSError, TimeoutError, asyncssh.Error) as error:
        report.reachable = False
        report.problems.append(f"Cannot reach {resource.host}:{resource.port}: {error or 'no answer'}.")
        return None
    report.host_key = key.get_fingerprint("sha256")
    return key


def _pin(resource: Resource, key: asyncssh.SSHKey) -> None:
    resource.host_keys = key.export_public_key().decode().strip()
    Resource.objects.filter(pk=resource.pk).update(host_keys=resource.host_keys)
    notify.notify(notify.CONTROLLER)
    notify.notify(notify.GATEWAY)


def _remember(resource: Resource, report: CheckReport) -> None:
    facts = {"checked": datetime.now(UTC).isoformat(), "host_key": report.host_key, "engine": report.engine,
             "partitions": report.partitions, "problems": report.problems}  # fmt: skip
    Resource.objects.filter(pk=resource.pk).update(facts=facts)
    resource.facts = facts


def check_batch_options(resource: Resource, partition: str, time_limit_minutes: int) -> None:
    """Refuse a partition or a time limit asked of a resource without a batch scheduler: nothing
    there would honour it, and the task would show it as if it did."""
    if resource.scheduler != SchedulerKind.NONE or not (partition or time_limit_minutes):
        return
    asked = " and ".join(
        what for what, value in (("partition", partition), ("time limit", time_limit_minutes)) if value
    )
    raise ValidationError(
        f"{resource.name} has no batch scheduler: it takes no partition or time limit (its tasks run until "
        f"stopped). Leave out the {asked}, or choose a resource with a batch scheduler."
    )


def check_request(resource: Resource, cpus: float, memory_mb: int, partition: str, time_limit_minutes: int) -> None:
    """Refuse (ValidationError naming the limit) a task request the resource cannot take: its own
    limits, and for a cluster the partition's as its last check found them."""
    resource.check_limits(cpus, memory_mb)
    partitions = {p["name"]: p for p in resource.facts.get("partitions", [])}
    if resource.scheduler != "slurm" or not partitions:
        return
    name = partition or resource.partition or next((p for p, found in partitions.items() if found["default"]), "")
    found = partitions.get(name)
    if found is None:
        raise ValidationError(f"{resource.name} has no partition {name!r}; it has {', '.join(sorted(partitions))}.")
    minutes = time_limit_minutes or resource.time_limit_minutes
    if found["max_minutes"] is not None and minutes > found["max_minutes"]:
        raise ValidationError(f"At most {found['max_minutes']} minutes in partition {name} of {resource.name}.")
    if memory_mb > found["memory_mb_per_node"]:
        raise ValidationError(
            f"At most {found['memory_mb_per_node']} MiB per node in partition {name} of {resource.name}."
        )
    if cpus > found["cpus_per_node"]:
        raise ValidationError(f"At most {found['cpus_per_node']} CPUs per node in partition {name} of {resource.name}.")
