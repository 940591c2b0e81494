"""Image preparation: the images a build names, each made ready once as a read-only store of its
own in the builds' ids, by a container in which no user's code runs, and kept while this machine
has the image. Only images already here or pulled beforehand, from allowed registries
(rosetta.catalog.containerfile), get there: the build has no registry to pull from."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from django.conf import settings

from rosetta.builds import limits
from rosetta.builds.commands import BuildFailed, last_line, run_tool
from rosetta.builds.log import BuildLog
from rosetta.builds.sandbox import (
    BUILDER_IMAGE,
    BUILDER_LABEL,
    KEPT_FOR_BUILDAH,
    KEPT_FOR_BUILDS,
    USER_NAMESPACE_SIZE,
    BuildPlace,
    dropped_capabilities,
    preparing_name,
    this_instance,
)
from rosetta.catalog.models import SoftwareBuild
from rosetta.core.paths import home, private_dir


def images_of(build: SoftwareBuild) -> tuple[list[str], list[str]]:
    """The images to pull first, and every image the build uses (they go into its container)."""
    from django.core.exceptions import ValidationError

    from rosetta.catalog.containerfile import check_containerfile, source_images
    from rosetta.catalog.models import check_use

    def may_use(image: str) -> None:
        check_use(image, build.owner)

    try:  # again: the operator's allowed registries, or an entry's sharing, may have changed since it was queued
        return check_containerfile(build.containerfile, may_use), source_images(build.containerfile, may_use)
    except ValidationError as error:
        raise BuildFailed(" ".join(error.messages)) from None


def prepare_images(build: SoftwareBuild, images: list[str], place: BuildPlace, output: BuildLog) -> list[Path]:
    """Each image the build uses as a store of its own, in the builds' ids, which its container
    gets read-only: made the first time a build uses that image under that name (it takes as
    long as copying the image), kept while this machine has the image. Nothing of a build's
    ever goes into one, and a build sees only those of the images it names."""
    if run_tool(["podman", "image", "exists", BUILDER_IMAGE], place.conf, timeout=60).returncode != 0:
        raise BuildFailed(
            f"This machine has no builder image ({BUILDER_IMAGE}); an operator makes it with "
            "`rosetta build-image builder` (scripts/setup.sh does)."
        )
    ready_dir = private_dir(home() / "build-images")
    _forget_removed_images(ready_dir, place.conf)
    stores = []
    for image in images:
        result = run_tool(["podman", "image", "inspect", "--format", "{{.Id}}", image], place.conf, timeout=60)
        if result.returncode != 0:
            raise BuildFailed(f"{image} cannot be used: {last_line(result.stderr)}")
        image_id = result.stdout.strip()
        store = ready_dir / f"{image_id}-{hashlib.sha256(image.encode()).hexdigest()[:16]}"
        if not store.is_dir():
            output.say(f"==> Preparing {image} for builds (once for this image)")
            _prepare(image, store, place, preparing_name(build))
        stores.append(store)
    return stores


def name_in_build(image: str) -> str:
    """The name ``image`` has in the build: itself, or ``REPOSITORY:sha256-HEX`` for ``REPOSITORY[:TAG]@sha256:HEX``."""
    if "@" not in image:
        return image
    repository, _, digest = image.partition("@")
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return f"{repository}:{digest.replace(':', '-')}"


def _prepare(image: str, store: Path, place: BuildPlace, name: str) -> None:
    """``image`` alone in a store at ``store``, written by a container in the builds' ids (no
    user's code runs in it), and renamed into place only once it is complete."""
    filling = Path(tempfile.mkdtemp(prefix=".filling-", dir=store.parent))
    try:
        archive = filling / "image.tar"
        argv = ["podman", "save", "--quiet", "--format", "docker-archive", "--output", str(archive), image]
        if name_in_build(image) != image:  # named by digest: the archive names it by a tag
            argv = [
                "skopeo",
                "copy",
                "--quiet",
                f"containers-storage:{image}",
                f"docker-archive:{archive}:{name_in_build(image)}",
            ]
        result = run_tool(argv, place.conf, timeout=limits.BUILD_TIMEOUT)
        if result.returncode != 0:
            raise BuildFailed(f"{image} cannot be used: {last_line(result.stderr)}")
        argv = [
            "podman", *_container_options_for_preparing(place), "--name", name, "--entrypoint", "buildah",
            "--mount", f"type=bind,source={filling},target=/prepare,U=true", BUILDER_IMAGE,
            "--root", "/prepare/store", "--runroot", "/prepare/run", "--storage-driver", "overlay",
            "pull", "--quiet", "docker-archive:/prepare/image.tar",
        ]  # fmt: skip
        try:
            result = run_tool(argv, place.conf, timeout=limits.BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"Preparing {image} took longer than {limits.BUILD_TIMEOUT / 60:g} minutes.") from None
        if result.returncode != 0:
            raise BuildFailed(f"{image} could not be prepared for the build: {last_line(result.stderr)}")
        (filling / "store").rename(store)
    finally:
        shutil.rmtree(filling, ignore_errors=True)


def _container_options_for_preparing(place: BuildPlace) -> list[str]:
    rootful = os.geteuid() == 0
    ids = f"0:{settings.BUILD_ID_BASE}:{USER_NAMESPACE_SIZE}"
    return [
        "run", "--rm", "--pull=never", "--label", f"{BUILDER_LABEL}={this_instance()}", "--network", "none",
        *(["--uidmap", ids, "--gidmap", ids] if rootful else []),
        "--cap-drop", ",".join(dropped_capabilities(KEPT_FOR_BUILDS + KEPT_FOR_BUILDAH)), "--memory", limits.MEMORY,
    ]  # fmt: skip


def _forget_removed_images(ready_dir: Path, conf: Path) -> None:
    """Stores of images this machine no longer has (removed, or a name moved to another image)."""
    for store in ready_dir.iterdir():
        image_id = store.name.partition("-")[0]
        gone = run_tool(["podman", "image", "exists", image_id], conf, timeout=60).returncode != 0
        if store.name.startswith(".filling-") or gone:
            shutil.rmtree(store, ignore_errors=True)
