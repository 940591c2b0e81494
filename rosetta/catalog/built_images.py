"""Images users' builds make are theirs: used only through the entries they were built for.

A build's image lives in this machine's store under the builds' namespace
(``localhost/rosetta-user/INSTANCE/uOWNER/NAME:VERSION``), and the pusher copies it to the
platform's registry under the same path. Both are readable by name to anyone who can name an
image: another user adding it as software of their own, or building ``FROM`` it (and reading its
files in the build log), would get a private entry's software. And since installations on one
machine share its store, a name there may be another installation's build altogether.

So a name under the builds' namespace, in this machine's store or the platform's registry, may
be used only where this installation has an entry of that image that the user may see (their
own, or one shared with them), and under the user's own part of it (where only this
installation's builds for that user write). Every other name there is refused, with words that
say nothing of whether it exists. This module names builds' images; the check that refuses them
(``check_use``) asks the catalogue's entries, so it lives beside them in ``catalog.models``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rosetta.catalog.registries import platform_registry, registry_of

NAMESPACE = "rosetta-user"


def built_image_name(owner, name: str, version: str) -> str:
    """Where a user's build goes in this machine's store: by installation and owner id, so that
    names never clash, between users nor between installations sharing the store."""
    return f"{own_namespace(owner)}{name}:{version}"


def own_namespace(user) -> str:
    from rosetta.computing.instance import instance_id

    return f"localhost/{NAMESPACE}/{instance_id()}/u{user.pk}/"


@dataclass(frozen=True)
class BuiltName:
    """A reference under the builds' namespace, as this machine's store names it."""

    repository: str  # localhost/rosetta-user/...
    tag: str | None
    digest: str | None

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag or 'latest'}"


def built_name(image: str) -> BuiltName | None:
    """``image`` as a name under the builds' namespace, whether it names this machine's store
    or the platform's registry (which serves the same paths); None for any other image."""
    registry = registry_of(image)
    if registry is None or (registry != "localhost" and registry != platform_registry()):
        return None
    path, _, digest = image.split("/", 1)[1].partition("@")
    if not path.startswith(f"{NAMESPACE}/"):
        return None
    repository, tag = path, None
    if ":" in path.rsplit("/", 1)[-1]:
        repository, tag = path.rsplit(":", 1)
    return BuiltName(f"localhost/{repository}", tag, digest or None)
