"""The builder's queue: builds users' Containerfiles one at a time (rosetta.builds.sandbox), oldest
first, and adds each image that builds to the catalogue (rosetta.builds.registration).

Level-triggered like the controller: each pass claims queued builds oldest first; a build left
``building`` by a builder that was killed is failed when the builder starts again, and its
container and directory are removed. It wakes when a build is queued (rosetta.core.worker) and
otherwise every ``POLL`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import close_old_connections
from django.utils import timezone

from rosetta.builds import limits
from rosetta.builds.commands import BuildFailed, run_podman_logged
from rosetta.builds.images import images_of, name_in_build, prepare_images
from rosetta.builds.log import BuildLog
from rosetta.builds.registration import finish, register, remove_image
from rosetta.builds.sandbox import (
    build_place,
    container_argv,
    load_result,
    remove_build_containers,
    remove_build_dir,
    remove_builder_network,
    runs_programs,
    store_paths,
)
from rosetta.catalog.models import BuildState, SoftwareBuild
from rosetta.catalog.services import BUILDER
from rosetta.core.paths import home
from rosetta.core.worker import run_worker

log = logging.getLogger("rosetta.builder")

POLL = 10.0


def run_builder(poll: float = POLL) -> None:
    """The builder process (rosetta.processes.builder): what a killed builder left is failed first."""
    fail_interrupted()
    try:
        run_worker("builder", BUILDER, build_queued, poll, log)
    finally:
        remove_builder_network()


def build_queued() -> Iterator[str]:
    """One pass: every queued build, oldest first, each saying how it ended."""
    while (build := claim_next()) is not None:
        yield run_build(build)
        close_old_connections()  # a build takes minutes: the connection may have gone meanwhile


def fail_interrupted() -> None:
    """Builds a killed builder left half-way: say so, add nothing, and remove what they left
    (their container may still be running: podman's client died, not the container)."""
    for build in SoftwareBuild.objects.filter(state=BuildState.BUILDING):
        finish(build, BuildState.FAILED, "The builder stopped during this build. Start the build again.")
        remove_image(build.image)
    remove_build_containers()
    builds = home() / "builds"
    if builds.is_dir():
        for leftover in builds.iterdir():
            remove_build_dir(leftover)


def claim_next() -> SoftwareBuild | None:
    """The oldest queued build, now ``building`` (compare-and-swap: one builder gets each)."""
    for build in SoftwareBuild.objects.filter(state=BuildState.QUEUED).order_by("created")[:5]:
        claimed = SoftwareBuild.objects.filter(pk=build.pk, state=BuildState.QUEUED).update(
            state=BuildState.BUILDING, started=timezone.now()
        )
        if claimed:
            build.refresh_from_db()
            return build
    return None


def run_build(build: SoftwareBuild) -> str:
    """Build ``build`` (claimed) and add its image, or record why not; a line saying which."""
    log.info("Building %s for %s.", build.image, build.owner.username)
    output = BuildLog(build)
    try:
        pulls, sources = images_of(build)
        containerfile = build.containerfile
        for image in sources:  # a prepared image has a manifest of its own: by digest, it goes by a tag
            containerfile = containerfile.replace(image, name_in_build(image))
        with build_place(build, network=runs_programs(containerfile), containerfile=containerfile) as place:
            output.hide(str(place.work), "/build")  # where this machine keeps it is not the user's business
            output.hide(str(place.conf.parent), "/build")
            for path, instead in store_paths(place.conf):  # the builder container's own root, say
                output.hide(path, instead)
            for image in pulls:
                output.say(f"==> Pulling {image}")
                run_podman_logged(output, ["pull", image], place.conf, timeout=limits.BUILD_TIMEOUT)
            ready = prepare_images(build, sources, place, output)
            for number, store in enumerate(ready):  # a RUN step can read its container's mount table
                output.hide(str(store), f"/images/{number}")
            output.say(f"==> Building {build.name}:{build.version}")
            argv = container_argv(build, place, ready)
            run_podman_logged(output, argv, place.conf, limits.BUILD_TIMEOUT, disk_mb=place.disk_mb)
            load_result(build.image, place)
            software = register(build, output)
    except BuildFailed as error:  # its containers are gone with its place (build_place)
        reason = output.redact(str(error))
        output.say(f"==> Failed: {reason}")
        output.flush(force=True)
        remove_image(build.image)
        finish(build, BuildState.FAILED, reason)
        return f"Build {build.pk} failed: {error}"
    except BaseException:
        output.flush(force=True)
        remove_image(build.image)
        finish(build, BuildState.FAILED, "The builder met an unexpected error; an operator can find it in its log.")
        raise
    return f"Build {build.pk} added {software.image}."
