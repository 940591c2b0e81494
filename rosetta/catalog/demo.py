"""The demo catalogue and the local computing resource that set-up creates."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.text import slugify

from rosetta.catalog.models import Protocol, Software, Visibility
from rosetta.computing.models import Resource

HELLO_IMAGE = "localhost/rosetta/hello"


@dataclass(frozen=True)
class BuiltIn:
    """A built-in environment (images/NAME) as the demo catalogue offers it."""

    name: str
    description: str
    protocol: Protocol
    port: int  # the image's default port; all of them take BASE_PORT
    version: str  # the version the catalogue lists

    @property
    def image(self) -> str:
        return f"localhost/rosetta/{self.name}"


# What images/README.md says of each; `scripts/setup.sh` builds them all.
BUILT_INS = (
    BuiltIn(
        "hello",
        "A minimal web page served from a container (BusyBox httpd). Good for a first try.",
        Protocol.HTTP,
        8080,
        "1",
    ),
    BuiltIn(
        "jupyterlab",
        "JupyterLab with scientific Python: numpy, scipy, matplotlib and astropy in the default kernel; "
        "terminals, and %pip install for more.",
        Protocol.HTTP,
        8888,
        "4.6",
    ),
    BuiltIn(
        "desktop",
        "A Linux desktop in the browser (noVNC): a window manager, a terminal, SAOImage DS9 and TOPCAT. "
        "Copy and paste through noVNC's clipboard panel; the desktop follows the window's size.",
        Protocol.HTTP,
        6080,
        "1.0",
    ),
    BuiltIn(
        "ssh",
        "An OpenSSH server for command-line work: ssh -X for graphical programs, scp, sftp and port "
        "forwarding. Your registered SSH keys log in, through the platform's SSH door.",
        Protocol.SSH,
        2222,
        "1.0",
    ),
)


def chosen_built_ins(names: list[str]) -> list[BuiltIn]:
    """The built-in environments ROSETTA_DEMO_SOFTWARE names (all by default); names it does not know are
    refused, so a typo does not silently leave an environment out."""
    known = {built_in.name: built_in for built_in in BUILT_INS}
    unknown = [name for name in names if name and name not in known]
    if unknown:
        raise ImproperlyConfigured(
            f"ROSETTA_DEMO_SOFTWARE names {', '.join(unknown)}, which is not a built-in environment "
            f"(they are {', '.join(known)})."
        )
    return [known[name] for name in dict.fromkeys(names) if name]


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
    softwares = []
    for built_in in chosen_built_ins(settings.DEMO_SOFTWARE):
        software, created = Software.objects.update_or_create(
            owner=None,
            name=built_in.name,
            version=built_in.version,
            defaults=dict(
                description=built_in.description,
                image=built_in.image,
                image_digest=image_digest(built_in.image),
                interface_protocol=built_in.protocol,
                interface_port=built_in.port,
                honours_base_port=True,
                visibility=Visibility.EVERYONE,
            ),
        )
        softwares.append(software)
        said.append(
            f"{'Added' if created else 'Updated'} software {software.name} "
            f"({software.image_digest or 'image not built'})."
        )
    said += push_to_registry(softwares)
    cpus = float(os.cpu_count() or 1)
    resource, created = _local_resource(cpus, _memory_mb() // 2)
    said.append(f"{'Added' if created else 'Kept'} computing resource {resource.name} ({resource.kind}).")
    return said


def _local_resource(cpus: float, memory_mb: int) -> tuple[Resource, bool]:
    """This machine's own resource: `local` on the first machine, `local-<node>` on the others
    sharing the database (each machine's engine is driven by that machine's controller only)."""
    mine = Resource.objects.filter(transport="local", node=settings.NODE).order_by("id").first()
    if mine is not None:
        return mine, False
    if not Resource.objects.filter(name="local").exists():
        name, description = "local", "This machine, with podman."
    else:
        name, description = slugify(f"local-{settings.NODE}")[:64], f"Machine {settings.NODE}, with podman."
    return Resource.objects.get_or_create(
        name=name, defaults=dict(description=description, node=settings.NODE, max_cpus=cpus, max_memory_mb=memory_mb)
    )


def push_to_registry(softwares) -> list[str]:
    """Copy their local images into the platform's registry now, for other machines to pull
    (rosetta.registry); if that cannot happen now, `rosetta run`'s pusher does it."""
    from rosetta.catalog.pushes import push_now
    from rosetta.registry.push import PushFailed

    try:
        return push_now(softwares)
    except PushFailed as error:
        return [f"Not copied to the platform's registry yet ({error}); `rosetta run` will."]


def _memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
