from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from rosetta.catalog.registries import check_registry
from rosetta.core.validation import IMAGE_REFERENCE, validate_env_vars, validate_image_reference


class Protocol(models.TextChoices):
    HTTP = "http", "HTTP"
    HTTPS = "https", "HTTPS"
    SSH = "ssh", "SSH"
    OTHER = "other", "Other"


class Visibility(models.TextChoices):
    PRIVATE = "private", "Only the owner"
    EVERYONE = "everyone", "Everyone"


class RegistryState(models.TextChoices):
    """Where the image stands in the platform's registry (rosetta.registry), which other machines pull from."""

    PENDING = "pending", "Waiting to be copied to the platform's registry"
    PUSHING = "pushing", "Being copied to the platform's registry"
    PUSHED = "pushed", "In the platform's registry"
    FAILED = "failed", "Could not be copied to the platform's registry"
    ELSEWHERE = "elsewhere", "Pulled from its own registry"


class SoftwareQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(Q(visibility=Visibility.EVERYONE) | Q(owner=user))


class Software(models.Model):
    """An entry of the catalogue: a container image and the interface it exposes."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True, max_length=2000)
    image = models.CharField(max_length=255, validators=[validate_image_reference])
    image_digest = models.CharField(
        max_length=80, blank=True, help_text="Digest or id recorded when the image was added."
    )
    interface_protocol = models.CharField(max_length=8, choices=Protocol.choices, default=Protocol.HTTP)
    interface_port = models.PositiveIntegerField(default=8080)
    honours_base_port = models.BooleanField(default=False, help_text="Listens on the port given by BASE_PORT when set.")
    environment = models.JSONField(default=dict, blank=True, validators=[validate_env_vars])
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE)
    created = models.DateTimeField(auto_now_add=True)

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
        ordering = ["name"]
        verbose_name_plural = "software"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # After the field validators: only a well-formed reference names a registry to check.
        if IMAGE_REFERENCE.match(self.image):
            try:
                check_registry(self.image)
            except ValidationError as error:
                raise ValidationError({"image": error}) from None
