import posixpath

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models

from rosetta.catalog.models import Software
from rosetta.computing.models import Resource

MAX_MOUNT_POINT = 255
# The container's own: a storage bound there would hide what the engine puts in place.
ENGINE_PLACES = ("/proc", "/sys", "/dev")


def validate_mount_point(path: str) -> None:
    """Where tasks may see a storage: an absolute, normalised path inside the container, with
    no character the engines' mount options would split (a comma, a colon) or control ones."""
    if not path.startswith("/"):
        raise ValidationError(f"The mount point {path[:64]!r} must be an absolute path inside tasks.")
    if len(path) > MAX_MOUNT_POINT:
        raise ValidationError(f"The mount point is longer than {MAX_MOUNT_POINT} characters.")
    if any(character in path for character in ",:") or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValidationError(f"The mount point {path!r} has a comma, a colon or a control character.")
    if path == "/" or path.startswith("//") or posixpath.normpath(path) != path:
        raise ValidationError(
            f"The mount point {path!r} must be a plain path below / (no '..', '.', '//', no / at the end)."
        )
    if any(path == place or path.startswith(place + "/") for place in ENGINE_PLACES):
        raise ValidationError(f"The mount point {path!r} is the container's own ({', '.join(ENGINE_PLACES)}).")


class StorageKind(models.TextChoices):
    LOCAL = "local", "A folder on this machine"
    SFTP = "sftp", "A folder on a resource, over SFTP"


class Storage(models.Model):
    """Where users keep data: a folder on this machine or on a resource (reached over SFTP
    through the resource's SSH connection), browsed in the file manager and mounted in tasks."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True, max_length=2000)
    kind = models.CharField(max_length=8, choices=StorageKind.choices, default=StorageKind.LOCAL)
    resource = models.ForeignKey(
        Resource, null=True, blank=True, on_delete=models.CASCADE, related_name="storages",
        help_text="SFTP: the resource whose SSH connection reaches the files.",
    )  # fmt: skip
    base_path = models.CharField(
        max_length=1024, help_text="Absolute; {username} becomes the user's name (their account's, over SFTP)."
    )
    read_only = models.BooleanField(default=False)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="storages")
    groups = models.ManyToManyField(Group, blank=True, related_name="storages")
    mount_point = models.CharField(max_length=255, blank=True, help_text="Where tasks see it (default /storage/NAME).")
    mountable_on = models.ManyToManyField(
        Resource, blank=True, related_name="mountable_storages", help_text="Resources where tasks can mount it."
    )
    mounted_by_default = models.BooleanField(default=True, help_text="Offered ticked on the new-task form.")
    default_for = models.ManyToManyField(
        Software, blank=True, related_name="default_storages", help_text="Ticked for these only (empty: for all)."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        return self.mount_point or f"/storage/{self.name}"

    @property
    def per_user(self) -> bool:
        return "{username}" in self.base_path

    def clean(self) -> None:
        if not self.base_path.startswith("/"):
            raise ValidationError("The base path must be absolute.")
        if self.mount_point:
            validate_mount_point(self.mount_point)
        if self.kind == StorageKind.SFTP and (self.resource is None or self.resource.transport != "ssh"):
            raise ValidationError("An SFTP storage needs a resource reached over SSH.")

    def default_for_software(self, software: Software) -> bool:
        if not self.mounted_by_default:
            return False
        chosen = list(self.default_for.all())
        return not chosen or software in chosen


class TaskMount(models.Model):
    """A storage as one task sees it, fixed when the task was requested."""

    task = models.ForeignKey("tasks.Task", on_delete=models.CASCADE, related_name="mounts")
    storage = models.ForeignKey(Storage, null=True, on_delete=models.SET_NULL, related_name="task_mounts")
    source = models.CharField(max_length=1024, help_text="The folder on the resource.")
    target = models.CharField(max_length=255, help_text="Where the task sees it.")
    read_only = models.BooleanField(default=False)

    class Meta:
        ordering = ["target"]

    def __str__(self) -> str:
        return f"{self.source} → {self.target}{' (ro)' if self.read_only else ''}"


class IdRange(models.Model):
    """A user's own range of host ids on this machine: slot N is the 65,536 ids from
    ROSETTA_STORAGE_ID_BASE + N × 65,536 (rosetta.storage.ids). A deleted user's row stays, with
    no user, so that never-used slots are given out before it is given again."""

    slot = models.PositiveIntegerField(unique=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="id_range"
    )

    def __str__(self) -> str:
        return f"slot {self.slot} ({self.user_id or 'free'})"
