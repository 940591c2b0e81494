"""The platform's own OCI registry: how images built on this machine reach every other one.

A resource other than this machine cannot see this machine's image store. So images of the
catalogue that live there (``localhost/...``) are copied ("pushed") into a registry the platform
runs (CNCF Distribution, Debian's ``docker-registry``), and the manifest digest it then holds is
recorded on the software entry. A remote engine is only ever handed ``ADDRESS/PATH@sha256:...``:
the engine checks what it pulls against that digest, so whatever is pushed under the same tag
later (by mistake or by someone who reached the registry) is never what a task runs.

This package copies images and knows nothing of the catalogue: what the catalogue records of
each copy, and ``image_for`` (the exact reference a resource's engine must run), are in
``rosetta.catalog.pushes``. Pushes happen away from requests, in the registry's pusher process
(``rosetta pusher``, see ``rosetta.registry.worker``) or synchronously in operator
commands (``rosetta setup``, ``rosetta build-image``); ``Software.registry_state`` says where
each image stands.
"""

from __future__ import annotations

import re

PUSHER = "registry"  # the pusher's wake-up socket (rosetta.core.notify)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def registry_of(image: str) -> str | None:
    """The registry an image reference names (``host[:port]``, lower-case), or None for a short
    name like ``debian:12``, which the engine would look up in registries of its own configuration."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return None


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
