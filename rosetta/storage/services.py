"""What users and the platform ask of storages: which a user may use, their files as that user
sees them, and the mounts a task gets. Thin views and API endpoints wrap these."""

from __future__ import annotations

import os

from django.core.exceptions import ValidationError
from django.db.models import Q

from rosetta.computing.contract import TASK_HOME
from rosetta.computing.errors import Refused
from rosetta.core.errors import NotFound
from rosetta.storage import ids
from rosetta.storage.errors import NoIdRange, PathRefused
from rosetta.storage.files import Files
from rosetta.storage.local import LocalFiles
from rosetta.storage.models import Storage, StorageKind, TaskMount, validate_mount_point
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


def task_id_base(user_id: int) -> int | None:
    """The first host id of the user namespace of a user's tasks that mount storages on this
    machine: their own range (rosetta.storage.ids), or a refusal the task's events show. None
    when the platform is not root (its tasks run as its account)."""
    if os.geteuid() != 0:
        return None
    try:
        return ids.first_id(ids.slot_of(user_id))
    except NoIdRange as error:
        raise Refused(str(error)) from None


def local_owner(user) -> tuple[int, int] | None:
    """Who owns what the platform creates on local storages for ``user``: when the platform
    runs as root, the host id their tasks' user has (so tasks write there as themselves, and
    one user's tasks cannot write another's files); else the platform's own account.
    ``NoIdRange`` (503) when this machine has no range left for them."""
    if os.geteuid() != 0:
        return None
    uid = ids.first_id(ids.slot_of(user.pk)) + TASK_USER
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


def parse_choice(choice: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:MOUNT`` (the storage seen at another point): the name, and the mount
    point if one is given (checked like storages' own)."""
    name, colon, target = choice.partition(":")
    if colon:
        try:
            validate_mount_point(target)
        except ValidationError as error:
            raise ValidationError(f"Storage {name}: {' '.join(error.messages)}") from None
    return name, (target if colon else None)


def attach(task, user, names: list[str] | None) -> list[TaskMount]:
    """Record the mounts of a new task: the storages named (``NAME`` or ``NAME:MOUNT``), or with
    ``None`` the defaults for its software. Two at one mount point, or a read-only one as the
    home, are refused. Local roots are created now, so the engine finds them."""
    offered = {storage.name: (storage, ticked) for storage, ticked in mountable(user, task.software, task.resource)}
    if names is None:
        chosen = [(storage, storage.target) for storage, ticked in offered.values() if ticked]
    else:
        choices = [parse_choice(choice) for choice in dict.fromkeys(names)]
        unknown = sorted({name for name, _ in choices} - set(offered))
        if unknown:
            raise ValidationError(
                f"Storage {', '.join(unknown)} cannot be mounted on {task.resource.name}"
                f" (mountable there: {', '.join(sorted(offered)) or 'none'})."
            )
        chosen = [(offered[name][0], target or offered[name][0].target) for name, target in choices]
    _check_mount_points(chosen)
    if chosen and task.resource.is_local and os.geteuid() == 0:
        try:  # the user's own host ids, which the task will run in (refused now, not at its start)
            ids.slot_of(user.pk)
        except NoIdRange as error:
            raise ValidationError(str(error)) from None
    mounts = []
    for storage, target in chosen:
        root = root_of(storage, user)
        if "," in root:
            raise ValidationError(f"Storage {storage.name} has a comma in its path: tasks cannot mount it.")
        if storage.kind == StorageKind.LOCAL and not storage.read_only:
            LocalFiles(root, False, local_owner(user)).ensure_root()
        mount = TaskMount(task=task, storage=storage, source=root, target=target, read_only=storage.read_only)
        mount.save()
        mounts.append(mount)
    return mounts


def _check_mount_points(chosen: list[tuple[Storage, str]]) -> None:
    seen: dict[str, Storage] = {}
    for storage, target in chosen:
        validate_mount_point(target)  # an operator's mount point made before it was checked
        if target in seen:
            raise ValidationError(
                f"Storages {seen[target].name} and {storage.name} would both be mounted at {target}: choose one,"
                f" or mount one elsewhere (NAME:MOUNT)."
            )
        seen[target] = storage
        if target == TASK_HOME and storage.read_only:
            raise ValidationError(
                f"Storage {storage.name} is read-only, so it cannot be the home ({TASK_HOME}), where programs write:"
                f" mount it elsewhere (NAME:MOUNT)."
            )


def describe(mount: TaskMount) -> str:
    name = mount.storage.name if mount.storage is not None else "a storage since removed"
    return f"{name} at {mount.target}{' (read-only)' if mount.read_only else ''}"


def home_mount(mounts) -> TaskMount | None:
    """The mount that is the task's home, if a storage is: then the home outlives the task."""
    return next((mount for mount in mounts if mount.target == TASK_HOME), None)


def what_is_kept(mounts) -> str:
    """What outlives a task with these mounts, and what does not, in plain words."""
    mounts = list(mounts)
    home = home_mount(mounts)
    others = ", ".join(describe(mount) for mount in mounts if mount is not home)
    if home is not None:
        name = home.storage.name if home.storage is not None else "a storage since removed"
        return (
            f"Kept: your home {TASK_HOME} (storage {name}){f', and {others}' if others else ''}. Not kept: everything"
            " else in the container (/tmp, packages installed outside your home, changes to the system)."
        )
    kept = f"Kept: {others}." if others else f"Nothing is kept: mount a storage at {TASK_HOME} to keep your work."
    scratch = f"Your home {TASK_HOME} is scratch space: lost when the task ends, with all else in the container."
    return f"{scratch} {kept}"


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
