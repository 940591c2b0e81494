"""The demo catalogue and the local computing resource that set-up creates."""

from __future__ import annotations

import os
import subprocess

from rosetta.catalog.models import Protocol, Software, Visibility
from rosetta.computing.models import Resource

HELLO_IMAGE = "localhost/rosetta/hello"


def image_digest(image: str) -> str:
    """The local image's id, or "" when the image is not there (yet)."""
    from rosetta.computing.engines.podman import local_containers_conf

    env = {**os.environ, "CONTAINERS_CONF": str(local_containers_conf())}
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Digest}}", image],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def ensure_demo_catalogue() -> list[str]:
    said = []
    software, created = Software.objects.update_or_create(
        owner=None,
        name="hello",
        version="1",
        defaults=dict(
            description="A minimal web page served from a container (BusyBox httpd). Good for a first try.",
            image=HELLO_IMAGE,
            image_digest=image_digest(HELLO_IMAGE),
            interface_protocol=Protocol.HTTP,
            interface_port=8080,
            honours_base_port=True,
            visibility=Visibility.EVERYONE,
        ),
    )
    said.append(
        f"{'Added' if created else 'Updated'} software {software.name} ({software.image_digest or 'image not built'})."
    )
    said += push_to_registry([software])
    cpus = float(os.cpu_count() or 1)
    resource, created = Resource.objects.get_or_create(
        name="local",
        defaults=dict(description="This machine, with podman.", max_cpus=cpus, max_memory_mb=_memory_mb() // 2),
    )
    said.append(f"{'Added' if created else 'Kept'} computing resource {resource.name} ({resource.kind}).")
    return said


def push_to_registry(softwares) -> list[str]:
    """Copy their local images into the platform's registry now, for other machines to pull
    (rosetta.registry); if that cannot happen now, `rosetta run`'s pusher does it."""
    from rosetta.registry.push import PushFailed, push_now

    try:
        return push_now(softwares)
    except PushFailed as error:
        return [f"Not copied to the platform's registry yet ({error}); `rosetta run` will."]


def _memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
