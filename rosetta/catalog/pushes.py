"""What the catalogue records of its images' copies in the platform's registry, and what tasks run.

``rosetta.registry`` copies images and knows nothing of software entries: the catalogue asks it
to push an entry's local image (``reconcile``, ``push_now``; the pusher process runs
``reconcile_catalogue``) and records the outcome on the entry (``Software.registry_*``).
``image_for`` is what the controller asks: the exact reference a resource's engine must run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from enum import Enum

from django.utils import timezone

from rosetta.catalog.models import RegistryState as State
from rosetta.catalog.models import Software
from rosetta.computing.errors import Refused, Unreachable
from rosetta.core.notify import notify
from rosetta.registry import DIGEST, PUSHER, is_local, pinned
from rosetta.registry.config import address, registry_enabled
from rosetta.registry.push import PushFailed, Writer, local_image_id, local_images, push_image

RETRY_FAILED_AFTER = timedelta(minutes=5)  # a failed copy of an unchanged local image is tried again this often
STILL_COPYING = "The image is still being copied to the platform's registry."


class Action(Enum):
    NOTHING = "nothing"
    ELSEWHERE = "elsewhere"  # record that the image is pulled from its own registry
    MISSING = "missing"  # record that the local image does not exist
    PUSH = "push"


def plan(software, local_id: str | None, now) -> Action:
    """What the pusher should do about ``software`` (pure: decided from the row, the local
    image's id and the time). Level-triggered: run again and again, it converges."""
    if not is_local(software.image):
        return Action.NOTHING if software.registry_state == State.ELSEWHERE else Action.ELSEWHERE
    current = software.registry_image == software.image
    if current and software.registry_state == State.PUSHED:
        # A removed local image leaves the registry's copy as valid as it was; a rebuilt one is copied again.
        return Action.NOTHING if local_id in (None, software.registry_source) else Action.PUSH
    if current and software.registry_state == State.FAILED:
        if local_id is None:
            return Action.NOTHING if not software.registry_source else Action.MISSING
        if local_id != software.registry_source:
            return Action.PUSH  # built (again) since
        changed = software.registry_changed
        return Action.PUSH if changed is None or now - changed >= RETRY_FAILED_AFTER else Action.NOTHING
    return Action.MISSING if local_id is None else Action.PUSH


def record(software, **fields) -> bool:
    """Write registry fields of ``software`` unless its image changed meanwhile (then the
    write would describe another image); whether it was written."""
    fields.setdefault("registry_image", software.image)
    written = Software.objects.filter(pk=software.pk, image=software.image).update(
        registry_changed=timezone.now(), **fields
    )
    return bool(written)


def push_software(software, writer: Writer, images: dict[str, str] | None = None) -> str:
    """Push ``software``'s local image and record the outcome; a line saying what happened."""
    record(software, registry_state=State.PUSHING, registry_reason="")
    try:
        pushed = push_image(software.image, writer, images)
    except PushFailed as error:
        record_missing_or_failed(software, str(error), source=local_image_id(software.image, images) or "")
        return f"Could not copy {software.image} ({software.name}) to the platform's registry: {error}"
    record(
        software,
        registry_state=State.PUSHED,
        registry_digest=pushed.digest,
        registry_source=pushed.source,
        registry_reason="",
    )
    took = f"{pushed.seconds:.2f} s"
    return f"Copied {software.image} ({software.name}) to the platform's registry as {pushed.digest} in {took}."


def record_missing_or_failed(software, reason: str, source: str = "") -> None:
    record(software, registry_state=State.FAILED, registry_digest="", registry_source=source, registry_reason=reason)


def reconcile(softwares, get_writer: Callable[[], Writer], images: dict[str, str] | None = None) -> list[str]:
    """Bring the registry fields of ``softwares`` in line with this machine's images: push what
    is not in the registry as it is now, record what is missing or pulled from elsewhere. A
    writer is asked of ``get_writer`` only when something is to be pushed. Lines saying what was done."""
    softwares = list(softwares)
    if images is None and any(is_local(software.image) for software in softwares):
        images = local_images()
    said = []
    for software in softwares:
        local_id = local_image_id(software.image, images) if is_local(software.image) else None
        action = plan(software, local_id, timezone.now())
        if action is Action.ELSEWHERE:
            record(software, registry_state=State.ELSEWHERE, registry_digest="", registry_source="", registry_reason="")
        elif action is Action.MISSING:
            record_missing_or_failed(software, f"Image {software.image} does not exist on this machine.")
            said.append(f"Image {software.image} ({software.name}) does not exist on this machine: not copied.")
        elif action is Action.PUSH:
            said.append(push_software(software, get_writer(), images))
    return said


def push_now(softwares) -> list[str]:
    """For operator commands: reconcile ``softwares`` at once, with a writer of their own.
    Raises PushFailed when no writer can start (the pusher of `rosetta run` tries again)."""
    if not registry_enabled():
        return []
    with contextlib.ExitStack() as stack:
        writers: list[Writer] = []

        def get_writer() -> Writer:
            if not writers:
                writers.append(stack.enter_context(Writer()))
            return writers[0]

        return reconcile(softwares, get_writer)


def reconcile_catalogue(get_writer: Callable[[], Writer]) -> list[str]:
    """One pass of the registry's pusher (rosetta.registry.worker.run_pusher): every entry, in order."""
    return reconcile(Software.objects.order_by("pk"), get_writer)


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
    if resource.is_local or not is_local(software.image):
        return software.image
    if not registry_enabled():
        raise Refused(
            f"The image {software.image} exists on the platform's machine only, and this platform runs no "
            "registry to copy it to other machines (ROSETTA_REGISTRY_LISTEN=off)."
        )
    current = software.registry_image == software.image
    if current and software.registry_state == State.FAILED:
        raise Refused(
            f"The image {software.image} could not be copied to the platform's registry: {software.registry_reason}"
        )
    where = address()
    if current and software.registry_state == State.PUSHED and DIGEST.match(software.registry_digest):
        if where is None:
            raise Unreachable("The platform's registry has not started yet.")
        return pinned(where, software.image, software.registry_digest)
    notify(PUSHER)  # a task waits for it: the pusher looks at once instead of at its next poll
    raise Unreachable(STILL_COPYING)
