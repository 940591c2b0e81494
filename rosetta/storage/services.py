"""What users and the platform ask of storages: which a user may use, their files as that user
sees them, and the mounts a task gets. Thin views and API endpoints wrap these."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q

from rosetta.core.errors import NotFound
from rosetta.storage.errors import PathRefused
from rosetta.storage.files import Files
from rosetta.storage.local import LocalFiles
from rosetta.storage.models import Storage, StorageKind, TaskMount
from rosetta.storage.paths import parts


def storages_of(user):
    """The storages ``user`` may use: those open to everyone (no users or groups named), or
    naming the user or one of their groups; over SFTP only while their resource is enabled."""
    queryset = Storage.objects.select_related("resource")
    queryset = queryset.filter(Q(resource__isnull=True) | Q(resource__enabled=True))
    if user.is_staff:
        return queryset
    open_to_all = Q(users__isnull=True, groups__isnull=True)
    return queryset.filter(open_to_all | Q(users=user) | Q(groups__in=user.groups.all())).distinct()


def get_storage(user, name: str) -> Storage:
    """The storage if ``user`` may use it; others are reported missing, not forbidden."""
    storage = storages_of(user).filter(name=name).first()
    if storage is None:
        raise NotFound(f"There is no storage called {name!r}.")
    return storage


def account_name(storage: Storage, user) -> str:
    """Who ``{username}`` is: the user's account on the storage's resource, or their Rosetta name."""
    if storage.kind == StorageKind.SFTP and storage.resource is not None:
        return storage.resource.account_for(user)[0] if storage.resource.per_user else user.get_username()
    return user.get_username()


def root_of(storage: Storage, user) -> str:
    name = account_name(storage, user)
    if storage.per_user:
        try:
            if len(parts(name)) != 1:
                raise PathRefused
        except PathRefused:
            raise PathRefused(f"The name {name!r} cannot be a folder's name: ask an operator.") from None
    return os.path.normpath(storage.base_path.replace("{username}", name))


def local_owner() -> tuple[int, int] | None:
    """Who owns what the platform creates on local storages: the image convention's user
    (uid/gid 1000) when the platform runs as root, which tasks in their own user namespaces
    then see as themselves through an id-mapped mount; else the platform's own account."""
    return settings.STORAGE_TASK_OWNER if os.geteuid() == 0 else None


def files_of(storage: Storage, user) -> Files:
    """The storage's files as ``user`` reaches them (synchronous: it may read the user's key)."""
    root = root_of(storage, user)
    if storage.kind == StorageKind.LOCAL:
        return LocalFiles(root, storage.read_only, local_owner())
    from rosetta.computing.backends import transport_for
    from rosetta.storage.sftp import SFTPFiles

    return SFTPFiles(transport_for(storage.resource, user), root, storage.read_only)


def mountable(user, software, resource) -> list[tuple[Storage, bool]]:
    """(storage, ticked by default) for each storage a task of ``software`` on ``resource`` may mount."""
    found = storages_of(user).filter(mountable_on=resource).prefetch_related("default_for")
    return [(storage, storage.default_for_software(software)) for storage in found]


def attach(task, user, names: list[str] | None) -> list[TaskMount]:
    """Record the mounts of a new task: the named storages, or with ``None`` the defaults for
    its software. Local roots are created now, so the engine finds them."""
    offered = {storage.name: (storage, ticked) for storage, ticked in mountable(user, task.software, task.resource)}
    if names is None:
        chosen = [storage for storage, ticked in offered.values() if ticked]
    else:
        unknown = sorted(set(names) - set(offered))
        if unknown:
            raise ValidationError(
                f"Storage {', '.join(unknown)} cannot be mounted on {task.resource.name}"
                f" (mountable there: {', '.join(sorted(offered)) or 'none'})."
            )
        chosen = [offered[name][0] for name in dict.fromkeys(names)]
    mounts = []
    for storage in chosen:
        root = root_of(storage, user)
        if storage.kind == StorageKind.LOCAL and not storage.read_only:
            LocalFiles(root, False, local_owner()).ensure_root()
        mounts.append(
            TaskMount.objects.create(
                task=task, storage=storage, source=root, target=storage.target, read_only=storage.read_only
            )
        )
    return mounts
