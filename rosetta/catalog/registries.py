"""Which registries images may come from.

An image reference is pulled by the container engine, as root on this machine. Left free, a
user could name ``127.0.0.1:6379/x`` and have the engine connect wherever this machine can
reach, then tell from the outcome which ports answer. So an image's registry must be one the
operator allows (``ROSETTA_ALLOWED_REGISTRIES``), checked when software is added and again when
a task starts (the list may have changed since).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError

from rosetta.registry import registry_of


def platform_registry() -> str | None:
    """The platform's own registry ("host:port" resources pull from; rosetta.registry), None
    when it runs none or has not started yet: images it serves are always allowed."""
    from rosetta.registry.config import address

    return address()


def allowed_registries() -> list[str]:
    platform = platform_registry()
    extra = [platform] if platform and platform not in settings.ALLOWED_REGISTRIES else []
    return [*settings.ALLOWED_REGISTRIES, *extra]


def check_registry(image: str) -> None:
    """Raise a ValidationError naming the allowed registries unless ``image`` comes from one.
    The platform's own registry is allowed but not named: the platform hands out its references
    itself (rosetta.catalog.pushes.image_for), users name the images they mean."""
    registry = registry_of(image)
    if registry in allowed_registries():
        return
    if registry is None:
        problem = f"{image!r} names no registry: write the image's full name, e.g. localhost/{image}."
    else:
        problem = f"Images from {registry} are not allowed here."
    choices = ", ".join(settings.ALLOWED_REGISTRIES) or "none (the operator has allowed no registry)"
    raise ValidationError(f"{problem} Allowed registries: {choices}.", code="registry")
