"""The platform's own OCI registry: how images built on this machine reach every other one.

A resource other than this machine cannot see this machine's image store. So images of the
catalogue that live there (``localhost/...``) are copied ("pushed") into a registry the platform
runs (CNCF Distribution, Debian's ``docker-registry``), and the manifest digest it then holds is
recorded on the software entry. A remote engine is only ever handed ``ADDRESS/PATH@sha256:...``:
the engine checks what it pulls against that digest, so whatever is pushed under the same tag
later (by mistake or by someone who reached the registry) is never what a task runs.

``image_for`` is what the controller asks: the exact reference a resource's engine must run.
Pushes happen away from requests, in the registry's pusher process (``rosetta registry pusher``,
see ``rosetta.registry.worker``) or synchronously in operator commands (``rosetta setup``,
``rosetta build-image``); ``Software.registry_state`` says where each image stands.
"""

from __future__ import annotations

import re

from rosetta.catalog.registries import registry_of
from rosetta.computing.errors import Refused, Unreachable

PUSHER = "registry"  # the pusher's wake-up socket (rosetta.core.notify)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
STILL_COPYING = "The image is still being copied to the platform's registry."


def is_local(image: str) -> bool:
    """Whether ``image`` names this machine's image store (which only this machine can read)."""
    return registry_of(image) == "localhost"


def repository(image: str) -> tuple[str, str]:
    """Where a local image goes in the platform's registry: (path, tag).
    ``localhost/rosetta/hello`` -> (``rosetta/hello``, ``latest``)."""
    name = image.split("@", 1)[0]
    if registry_of(image) is not None:
        name = name.split("/", 1)[1]
    if ":" in name.rsplit("/", 1)[-1]:
        path, tag = name.rsplit(":", 1)
        return path, tag
    return name, "latest"


def pinned(address: str, image: str, digest: str) -> str:
    """The reference by digest (never by tag) of ``image``'s copy in the registry at ``address``."""
    if not DIGEST.match(digest):
        raise ValueError(f"{digest!r} is not a sha256 manifest digest.")
    return f"{address}/{repository(image)[0]}@{digest}"


def from_platform_registry(reference: str) -> bool:
    """Whether ``reference`` is served by the platform's registry (plain HTTP: an engine pulling
    it needs ``--tls-verify=false``, or the host's registries.conf marking the address insecure)."""
    from rosetta.registry.config import address

    where = address()
    return where is not None and registry_of(reference) == where


def image_for(software, resource) -> str:
    """The image reference ``resource``'s engine must run for ``software``.

    - On this machine (transport ``local``): ``software.image`` as it is.
    - Elsewhere, for an image of this machine's store (``localhost/...``): the copy in the
      platform's registry, by the digest recorded when it was pushed —
      ``ADDRESS/PATH@sha256:...``, never a tag.
    - Elsewhere, for an image on another registry: ``software.image`` (the engine pulls it
      from there; the operator allowed that registry).

    Raises ``Unreachable`` (transient: the controller retries) while the copy is pending or
    under way, or before the registry has started; ``Refused`` (the task fails with this
    reason) when the copy failed, or when the platform runs no registry. Reads no database row:
    ``software`` is taken as the caller read it.
    """
    from rosetta.catalog.models import RegistryState
    from rosetta.registry.config import address, registry_enabled

    if resource.transport == "local" or not is_local(software.image):
        return software.image
    if not registry_enabled():
        raise Refused(
            f"The image {software.image} exists on the platform's machine only, and this platform runs no "
            "registry to copy it to other machines (ROSETTA_REGISTRY_LISTEN=off)."
        )
    current = software.registry_image == software.image
    if current and software.registry_state == RegistryState.FAILED:
        raise Refused(
            f"The image {software.image} could not be copied to the platform's registry: {software.registry_reason}"
        )
    where = address()
    if current and software.registry_state == RegistryState.PUSHED and DIGEST.match(software.registry_digest):
        if where is None:
            raise Unreachable("The platform's registry has not started yet.")
        return pinned(where, software.image, software.registry_digest)
    from rosetta.core.notify import notify

    notify(PUSHER)  # a task waits for it: the pusher looks at once instead of at its next poll
    raise Unreachable(STILL_COPYING)
