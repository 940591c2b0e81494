from django.conf import settings
from django.db import models
from django.db.models import Q

from rosetta.core.validation import validate_env_vars, validate_image_reference


class Protocol(models.TextChoices):
    HTTP = "http", "HTTP"
    HTTPS = "https", "HTTPS"
    SSH = "ssh", "SSH"
    OTHER = "other", "Other"


class Visibility(models.TextChoices):
    PRIVATE = "private", "Only the owner"
    EVERYONE = "everyone", "Everyone"


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

    objects = SoftwareQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "software"

    def __str__(self) -> str:
        return self.name
