"""The builder with this machine's podman: what fails after the build adds nothing and leaves
no image; a build over its time limit is stopped, its container with it; a build a killed
builder left half-way is failed, not left hanging, and what it left running is removed."""

import re
import subprocess
import time

import pytest
from django.contrib.auth import get_user_model

from rosetta.builds import limits, registration, sandbox, worker
from rosetta.catalog import services
from rosetta.catalog.built_images import built_image_name
from rosetta.catalog.models import BuildState, Software
from rosetta.computing.engines.podman import local_containers_conf
from rosetta.computing.instance import instance_id
from rosetta.core.paths import home

pytestmark = pytest.mark.django_db


def podman(*args: str) -> subprocess.CompletedProcess:
    env = {"CONTAINERS_CONF": str(local_containers_conf()), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    return subprocess.run(["podman", *args], env=env, check=False, capture_output=True, text=True)


def image_exists(image: str) -> bool:
    return podman("image", "exists", image).returncode == 0


def test_an_image_over_the_size_limit_is_built_but_not_added(monkeypatch):
    owner = get_user_model().objects.create_user("builder-test")
    digest = podman("image", "inspect", "--format", "{{.Digest}}", "localhost/rosetta/hello").stdout.strip()
    build = services.request_build(  # FROM by digest, as the catalogue shows it
        owner, name="too-big", version="1", containerfile=f"FROM localhost/rosetta/hello@{digest}\nENV A=1\n"
    )
    monkeypatch.setattr(limits, "MAX_IMAGE_MB", 0)
    claimed = worker.claim_next()
    assert claimed.pk == build.pk and claimed.state == BuildState.BUILDING
    worker.run_build(claimed)

    build.refresh_from_db()
    assert build.state == BuildState.FAILED and "at most 0 MiB are allowed" in build.reason
    assert "Successfully tagged" in build.log and "==> Failed: The image is" in build.log
    assert not Software.objects.filter(name="too-big").exists() and build.software is None
    assert not image_exists(build.image)


def test_a_build_over_its_time_limit_is_stopped_with_its_container(monkeypatch):
    owner = get_user_model().objects.create_user("builder-test")
    build = services.request_build(
        owner, name="slow", version="1", containerfile="FROM localhost/rosetta/hello\nRUN echo started; sleep 600\n"
    )
    monkeypatch.setattr(limits, "BUILD_TIMEOUT", 5)
    try:
        worker.run_build(worker.claim_next())
    finally:
        sandbox.remove_builder_network()
    build.refresh_from_db()
    assert build.state == BuildState.FAILED and "took longer than" in build.reason
    assert "started" in build.log
    assert podman("container", "exists", sandbox.container_name(build)).returncode == 1  # not left running
    assert not image_exists(build.image)


def test_a_build_that_fills_its_disk_is_stopped_at_once_and_leaves_nothing(monkeypatch):
    owner = get_user_model().objects.create_user("builder-test")
    build = services.request_build(owner, name="filler", version="1", containerfile=(
        "FROM localhost/rosetta/hello\nRUN echo writing && dd if=/dev/zero of=/tmp/big bs=1M count=1024\n"
    ))  # fmt: skip
    monkeypatch.setattr(limits, "MAX_DISK_MB", 64)
    started = time.monotonic()
    try:
        worker.run_build(worker.claim_next())
    finally:
        sandbox.remove_builder_network()
    took = time.monotonic() - started
    build.refresh_from_db()
    assert build.state == BuildState.FAILED, build.log
    assert build.reason == "The build filled its 64 MiB of disk and was stopped (an image may be at most 4,096 MiB)."
    # Stopped in the step that wrote, not found out once the image was made.
    assert "writing" in build.log and "No space left on device" in build.log, build.log
    assert "COMMIT" not in build.log and "Successfully tagged" not in build.log and took < 60
    # Nothing is left: no image, no container, no directory or disk file, nothing mounted.
    assert not image_exists(build.image)
    assert podman("container", "exists", sandbox.container_name(build)).returncode == 1
    assert not any((home() / "builds").iterdir())
    with open("/proc/self/mountinfo") as mounts:
        assert str(home() / "builds") not in mounts.read()


def test_a_build_log_names_no_path_of_this_machine():
    owner = get_user_model().objects.create_user("builder-test")
    build = services.request_build(owner, name="looker", version="1", containerfile=(
        "FROM localhost/rosetta/hello\nRUN cat /proc/1/mountinfo\n"  # its container's mounts, sources included
    ))  # fmt: skip
    try:
        worker.run_build(worker.claim_next())
    finally:
        sandbox.remove_builder_network()
    build.refresh_from_db()
    registration.remove_image(build.image)
    assert build.state == BuildState.SUCCEEDED, build.reason
    assert " /images/0 /images/0 " in build.log  # the image it uses, named as its container names it
    assert str(home()) not in build.log
    store = podman("info", "--format", "{{.Store.GraphRoot}}").stdout.strip()
    assert store not in build.log and "PODMAN_STORE" in build.log  # the builder container's own root
    assert not re.search(r"/dev/loop\d", build.log)


def test_a_build_left_half_way_fails_when_the_builder_starts_again():
    owner = get_user_model().objects.create_user("builder-test")
    build = services.request_build(owner, name="cut", version="1", containerfile="FROM localhost/rosetta/hello\n")
    worker.claim_next()
    # Its container outlived the killed builder (podman's client died with it, not the container).
    left = podman(
        "run", "--detach", "--label", f"{sandbox.BUILDER_LABEL}={instance_id()}", "localhost/rosetta/hello"
    ).stdout.strip()
    worker.fail_interrupted()
    build.refresh_from_db()
    assert build.state == BuildState.FAILED and "builder stopped during this build" in build.reason
    assert worker.claim_next() is None
    assert podman("container", "exists", left).returncode == 1


def test_a_build_from_an_image_no_longer_shared_fails_before_anything_runs():
    users = get_user_model().objects
    alice, bob = users.create_user("builder-alice"), users.create_user("builder-bob")
    image = built_image_name(alice, "base", "1")  # as if built
    entry = Software.objects.create(owner=alice, name="base", image=image, source="build", visibility="everyone")
    build = services.request_build(bob, name="mine", version="1", containerfile=f"FROM {image}\nRUN echo ran\n")
    entry.visibility = "private"  # Alice stops sharing it while Bob's build waits
    entry.save()
    worker.run_build(worker.claim_next())
    build.refresh_from_db()
    assert build.state == BuildState.FAILED
    assert build.reason == f"Line 1: {image} is not an image you can use: images built here from users' " + (
        "Containerfiles are used only through their catalogue entries, by their owners and whoever an entry is "
        "shared with."
    )
    assert "Preparing" not in build.log and "ran" not in build.log
