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


TASK_USER = 1000  # the image convention's user (images/README.md)
ID_RANGE = 65536  # ids in a task's user namespace


def task_id_base(user_id: int) -> int:
    """The first host id of the user namespace of a user's tasks that mount storages: a range
    of their own, outside the ranges of other accounts and of podman's automatic ones."""
    return settings.STORAGE_ID_BASE + user_id * ID_RANGE


def local_owner(user) -> tuple[int, int] | None:
    """Who owns what the platform creates on local storages for ``user``: when the platform
    runs as root, the host id their tasks' user has (so tasks write there as themselves, and
    one user's tasks cannot write another's files); else the platform's own account."""
    if os.geteuid() != 0:
        return None
    uid = task_id_base(user.pk) + TASK_USER
    return uid, uid


def files_of(storage: Storage, user) -> Files:
    """The storage's files as ``user`` reaches them (synchronous: it may read the user's key)."""
    root = root_of(storage, user)
    if storage.kind == StorageKind.LOCAL:
        return LocalFiles(root, storage.read_only, local_owner(user))
    from rosetta.computing.backends import transport_for
    from rosetta.storage.sftp import SFTPFiles, fixed_part, platform_folders

    transport = transport_for(storage.resource, user)
    return SFTPFiles(transport, root, storage.read_only, fixed_part(storage.base_path), platform_folders(storage))


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
        if "," in root or "," in storage.target:
            raise ValidationError(f"Storage {storage.name} has a comma in its path: tasks cannot mount it.")
        if storage.kind == StorageKind.LOCAL and not storage.read_only:
            LocalFiles(root, False, local_owner(user)).ensure_root()
        mounts.append(
            TaskMount.objects.create(
                task=task, storage=storage, source=root, target=storage.target, read_only=storage.read_only
            )
        )
    return mounts


def describe(mount: TaskMount) -> str:
    return f"{mount.storage.name} at {mount.target}{' (read-only)' if mount.read_only else ''}"


def save_storage(*, name: str, resource: str | None, users: list[str], groups: list[str], mountable_on: list[str],
                 **fields) -> Storage:  # fmt: skip
    """Add a storage as staff describe it; names of users, groups and resources must exist."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import IntegrityError, transaction

    from rosetta.computing.models import Resource
    from rosetta.core.errors import Conflict

    def existing(model, names: list[str], field: str, what: str) -> list:
        found = list(model.objects.filter(**{f"{field}__in": names}))
        missing = sorted(set(names) - {getattr(item, field) for item in found})
        if missing:
            raise ValidationError(f"No {what} called {', '.join(missing)}.")
        return found

    storage = Storage(name=name, **fields)
    if resource:
        storage.resource = existing(Resource, [resource], "name", "resource")[0]
    storage.clean()
    allowed = existing(get_user_model(), users, "username", "user")
    allowed_groups = existing(Group, groups, "name", "group")
    resources = existing(Resource, mountable_on, "name", "resource")
    try:
        with transaction.atomic():
            storage.save()
            storage.users.set(allowed)
            storage.groups.set(allowed_groups)
            storage.mountable_on.set(resources)
    except IntegrityError:
        raise Conflict(f"There is a storage called {name!r} already.") from None
    return storage
