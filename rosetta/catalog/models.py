import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from rosetta.catalog.built_images import BuiltName, built_name, own_namespace
from rosetta.catalog.registries import check_registry
from rosetta.core.validation import IMAGE_REFERENCE, validate_env_vars, validate_image_reference


class Protocol(models.TextChoices):
    HTTP = "http", "HTTP"
    HTTPS = "https", "HTTPS"
    SSH = "ssh", "SSH"
    OTHER = "other", "Other"


class Visibility(models.TextChoices):
    PRIVATE = "private", "Only the owner"
    GROUP = "group", "A group"
    EVERYONE = "everyone", "Everyone"


class Status(models.TextChoices):
    """What the catalogue does with an entry. Tasks that used one keep showing it whatever it becomes."""

    LISTED = "listed", "Listed"
    HIDDEN = "hidden", "Hidden: not listed, still startable by its exact NAME:VERSION"
    RETIRED = "retired", "Retired: not startable"


class Source(models.TextChoices):
    IMAGE = "image", "An image reference"
    BUILD = "build", "Built here from a Containerfile"


VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


def validate_version(value: str) -> None:
    if not VERSION.match(value or ""):
        raise ValidationError(
            f"{str(value)[:40]!r} is not a valid version: 1-32 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. 1.0, py3.11)."
        )


class RegistryState(models.TextChoices):
    """Where the image stands in the platform's registry (rosetta.registry), which other machines pull from."""

    PENDING = "pending", "Waiting to be copied to the platform's registry"
    PUSHING = "pushing", "Being copied to the platform's registry"
    PUSHED = "pushed", "In the platform's registry"
    FAILED = "failed", "Could not be copied to the platform's registry"
    ELSEWHERE = "elsewhere", "Pulled from its own registry"


class SoftwareQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Entries ``user`` may see and start: their own, their groups', everyone's. Staff are no
        exception here (an operator's catalogue is a user's catalogue; rosetta.catalog.services
        gives them every entry where they manage the catalogue)."""
        shared = Q(visibility=Visibility.EVERYONE) | Q(visibility=Visibility.GROUP, group__in=user.groups.all())
        return self.filter(shared | Q(owner=user))

    def startable(self):
        return self.exclude(status=Status.RETIRED)


class Software(models.Model):
    """An entry of the catalogue: a container image and the interface it exposes."""

    name = models.SlugField(max_length=64, help_text="Unique per owner together with the version.")
    version = models.CharField(max_length=32, default="1", validators=[validate_version])
    description = models.TextField(blank=True, max_length=2000)
    image = models.CharField(max_length=255, validators=[validate_image_reference])
    image_digest = models.CharField(
        max_length=80, blank=True, help_text="Digest or id recorded when the image was added."
    )
    interface_protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.HTTP)
    interface_port = models.PositiveIntegerField(default=8080)
    honours_base_port = models.BooleanField(default=False, help_text="Listens on the port given by BASE_PORT when set.")
    own_authorization = models.BooleanField(
        default=False,
        help_text="The interface does its own HTTP authentication: the browser's Authorization header reaches it, "
        "and the gateway does not send the task's secret.",
    )
    environment = models.JSONField(default=dict, blank=True, validators=[validate_env_vars])
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE)
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.SET_NULL, help_text="Who sees it (visibility group)."
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.LISTED)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.IMAGE)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    # The copy in the platform's registry, written by rosetta.registry only. The digest is valid for
    # ``registry_image`` as it was when copied (the local image ``registry_source``); a changed image
    # or a rebuilt local image is copied again before remote resources may run it.
    registry_state = models.CharField(max_length=10, choices=RegistryState.choices, default=RegistryState.PENDING)
    registry_digest = models.CharField(
        max_length=80, blank=True, help_text="The manifest digest the platform's registry holds (sha256:...)."
    )
    registry_image = models.CharField(max_length=255, blank=True, help_text="The image reference that was copied.")
    registry_source = models.CharField(max_length=80, blank=True, help_text="The local image id that was copied.")
    registry_reason = models.CharField(max_length=1000, blank=True, help_text="Why the last copy failed.")
    registry_changed = models.DateTimeField(null=True, blank=True)

    objects = SoftwareQuerySet.as_manager()

    class Meta:
        ordering = ["name", "-created"]
        verbose_name_plural = "software"
        constraints = [
            # Names are per owner: one user's entry never blocks (nor reveals) another's.
            models.UniqueConstraint(fields=["owner", "name", "version"], name="unique_software_version_per_owner"),
            models.UniqueConstraint(
                fields=["name", "version"], condition=Q(owner__isnull=True), name="unique_platform_software_version"
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def reference(self) -> str:
        """How a user names it exactly: NAME:VERSION (their own, else the shared one; see resolve)."""
        return f"{self.name}:{self.version}"

    @property
    def digest(self) -> str:
        """What tasks run: the digest the platform's registry holds, else the local image's."""
        current = self.registry_state == RegistryState.PUSHED and self.registry_image == self.image
        return self.registry_digest if current and self.registry_digest else self.image_digest

    def clean(self) -> None:
        if "\x00" in self.description:
            raise ValidationError({"description": "The description contains a NUL character."})
        if self.visibility == Visibility.GROUP and self.group_id is None:
            raise ValidationError({"group": "Name the group that may see it."})
        if self.visibility != Visibility.GROUP:
            self.group = None
        # After the field validators: only a well-formed reference names a registry to check.
        if IMAGE_REFERENCE.match(self.image):
            try:
                check_registry(self.image)
                check_use(self.image, self.owner if self.owner_id else None)  # a build's image is its entries'
            except ValidationError as error:
                raise ValidationError({"image": error}) from None


def check_use(image: str, user) -> None:
    """Raise a ValidationError unless ``user`` (None: the platform's own entries) may use
    ``image``: any image outside the builds' namespace; there, only an image of an entry
    ``user`` may see, or one of ``user``'s own builds."""
    name = built_name(image)
    if name is None or _usable(name, user):
        return
    raise ValidationError(
        f"{image[:200]} is not an image you can use: images built here from users' Containerfiles are "
        "used only through their catalogue entries, by their owners and whoever an entry is shared with.",
        code="built-image",
    )


def _usable(name: BuiltName, user) -> bool:
    if user is not None and name.repository.startswith(own_namespace(user)):
        return True  # only this installation's builds for this user write there
    entries = Software.objects.all()  # built here, or imported for a user (catalog.transfer)
    if name.tag is not None or name.digest is None:
        entries = entries.filter(image=name.image)
    else:  # by digest alone: any version of that name, as long as the digest is that entry's
        entries = entries.filter(image__startswith=f"{name.repository}:")
    if name.digest is not None:
        entries = entries.filter(Q(image_digest=name.digest) | Q(registry_digest=name.digest))
    visible = entries.filter(visibility=Visibility.EVERYONE) if user is None else entries.visible_to(user)
    return visible.exists()


class BuildState(models.TextChoices):
    QUEUED = "queued", "Waiting for the builder"
    BUILDING = "building", "Building"
    SUCCEEDED = "succeeded", "Built and added to the catalogue"
    FAILED = "failed", "Failed: nothing was added"


class SoftwareBuild(models.Model):
    """A user's request to build an image from a Containerfile and add it to the catalogue.

    The entry it makes (``software``) exists only once the image is built and checked: a failed
    build leaves its log and reason here and nothing in the catalogue. What the entry will be
    (interface, environment, visibility...) is declared up front in ``declared``.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="software_builds")
    name = models.SlugField(max_length=64)
    version = models.CharField(max_length=32, validators=[validate_version])
    containerfile = models.TextField()
    declared = models.JSONField(default=dict, help_text="The entry's fields besides name, version and image.")
    state = models.CharField(max_length=9, choices=BuildState.choices, default=BuildState.QUEUED)
    reason = models.TextField(blank=True, help_text="Why it failed, in plain words.")
    log = models.TextField(blank=True, help_text="podman's output, as it came.")
    image = models.CharField(max_length=255, blank=True, help_text="The image it builds.")
    software = models.OneToOneField(Software, null=True, blank=True, on_delete=models.SET_NULL, related_name="build")
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"build {self.pk} of {self.name}:{self.version}"

    @property
    def is_final(self) -> bool:
        return self.state in (BuildState.SUCCEEDED, BuildState.FAILED)
