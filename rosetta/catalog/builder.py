"""The builder: builds users' Containerfiles one at a time, each inside a container of its own,
and adds each image that builds to the catalogue (then the pusher copies it to the platform's
registry, so every resource runs it by digest).

A build runs users' code (its RUN steps, and triggers an image brings along), so it is a task
boundary like any other: root inside it is not root outside. podman 4.3's own ``build`` cannot
give RUN steps a user namespace (the build container's root directory stays the host root's, so
root in it cannot write to ``/``; with idmapped overlay layers the committed files keep host
ids), so the build itself runs inside a container, ``localhost/rosetta/builder`` (Debian's
buildah, chroot isolation), started like a task:

- a user namespace of the builds' own (host ids from ``ROSETTA_BUILD_ID_BASE``, which
  scripts/setup.sh reserves; builds run one at a time): the build's root, and every RUN step, is
  an unprivileged id of this machine;
- its ``/build`` holds only the Containerfile (the whole context: nothing of the platform's, no
  secret key, database, host CA or other build secret, is there to COPY) and buildah's store for
  this build alone, so no layer cache is shared between builds (one user's RUN output never
  stands in for another's); podman itself runs with a bare environment (PATH, HOME, TMPDIR, its
  settings) kept outside ``/build``, nothing of ours;
- the images it names, and only those, read-only: each prepared once (per image and name) as a
  store of its own in the builds' ids, by a container in which no user's code runs, and kept
  while this machine has the image; only images already here or pulled beforehand, from allowed
  registries (rosetta.catalog.containerfile), get there: the build has no registry to pull from;
- RUN steps get the network (package installs need it) on the builder's own network, drawn
  from the task pool, which the task firewall fences in (rosetta.computing.firewall): no
  service of this machine, no task, no link-local address; a build without RUN gets none;
- a task's capabilities for RUN steps (the container keeps SETFCAP and SYS_CHROOT, which buildah
  needs and which mean nothing outside its user namespace), at most 2 GiB of memory and one CPU
  for the whole build, ``ROSETTA_BUILD_TIMEOUT`` seconds in all, an image of at most
  ``ROSETTA_BUILD_MAX_IMAGE_MB``, and a log kept to 1 MiB;
- a disk of its own: ``/build`` is a file system of ``ROSETTA_BUILD_MAX_DISK_MB`` (a sparse file,
  loop-mounted), the container's root is read-only and buildah's temporary files are in
  ``/build``, so a build that writes too much fails in the step that wrote, and takes its disk
  with it.

What comes out is an archive the container wrote: it is read as untrusted input (no symlink
followed, the name inside it ignored) into this machine's store under the build's own image
name. Only a built, checked image becomes an entry, in one transaction with the build's success;
a failed build removes what it made and leaves its log and reason.

Level-triggered like the controller: each pass claims the oldest queued build; a build left
``building`` by a builder that was killed is failed when the builder starts again, and its
container and directory are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from rosetta.catalog.models import BuildState, Software, SoftwareBuild, Source
from rosetta.catalog.services import BUILDER
from rosetta.core.notify import MAX_TOPIC, after_commit, socket_path
from rosetta.core.paths import home, private_dir

log = logging.getLogger("rosetta.builder")

POLL = 10.0
BUILD_TIMEOUT = float(os.environ.get("ROSETTA_BUILD_TIMEOUT", "1800"))
MAX_IMAGE_MB = int(os.environ.get("ROSETTA_BUILD_MAX_IMAGE_MB", "4096"))
MAX_DISK_MB = int(os.environ.get("ROSETTA_BUILD_MAX_DISK_MB", "0"))  # 0: twice the image's limit, and 512 MiB
MAX_LOG = 1024 * 1024
FLUSH_EVERY = 0.3  # seconds between writes of new log lines: the page and the CLI poll them
MEMORY = "2g"
KEPT_FOR_BUILDS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID")
# What buildah itself needs besides, in the builder's user namespace only: chroot (its isolation)
# and SETFCAP (since Linux 5.12, to map root into the namespace it runs RUN steps in).
KEPT_FOR_BUILDAH = ("SETFCAP", "SYS_CHROOT")
BUILDER_IMAGE = "localhost/rosetta/builder"
BUILDER_LABEL = "rosetta.builder"  # on build containers: the instance that runs them
USER_NAMESPACE_SIZE = 65536  # ids a build may use, as a task
# What podman and skopeo write goes into this machine's image store, whose files end up in images:
# not with the platform's private umask (skopeo, unlike podman, keeps the umask it is given, and a
# layer it adds under 077 makes its image's / 0500, which no non-root program can start in).
STORE_UMASK = 0o022


class BuildFailed(Exception):
    """The build did not give an image; the message says why in plain words."""


def run_builder(poll: float = POLL) -> None:
    signal.signal(signal.SIGTERM, _exit)
    fail_interrupted()
    path = socket_path(BUILDER)
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as wakeups, _network_removed_at_exit():
        wakeups.bind(str(path))
        log.info("The builder is running.")
        while True:
            close_old_connections()
            try:
                build = claim_next()
                if build is not None:
                    run_build(build)
                    continue  # the next one at once
            except Exception:
                log.exception("The builder failed a pass; it tries again.")
            _wait(wakeups, poll)


def _exit(signum, frame) -> None:
    raise SystemExit(0)


@contextlib.contextmanager
def _network_removed_at_exit():
    try:
        yield
    finally:
        remove_builder_network()


def _wait(wakeups: socket.socket, timeout: float) -> None:
    wakeups.settimeout(timeout)
    with contextlib.suppress(TimeoutError):
        wakeups.recv(MAX_TOPIC)


def fail_interrupted() -> None:
    """Builds a killed builder left half-way: say so, add nothing, and remove what they left
    (their container may still be running: podman's client died, not the container)."""
    for build in SoftwareBuild.objects.filter(state=BuildState.BUILDING):
        _finish(build, BuildState.FAILED, "The builder stopped during this build. Start the build again.")
        _remove_image(build.image)
    _remove_build_containers()
    builds = home() / "builds"
    if builds.is_dir():
        for leftover in builds.iterdir():
            _remove_build_dir(leftover)


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


def run_build(build: SoftwareBuild) -> None:
    log.info("Building %s for %s.", build.image, build.owner.username)
    output = BuildLog(build)
    try:
        pulls, sources = _images(build)
        containerfile = build.containerfile
        for image in sources:  # a prepared image has a manifest of its own: by digest, it goes by a tag
            containerfile = containerfile.replace(image, name_in_build(image))
        with build_place(build, network=runs_programs(containerfile), containerfile=containerfile) as place:
            output.hide(str(place.work), "/build")  # where this machine keeps it is not the user's business
            output.hide(str(place.conf.parent), "/build")
            for path, instead in _store_paths(place.conf):  # the builder container's own root, say
                output.hide(path, instead)
            for image in pulls:
                output.say(f"==> Pulling {image}")
                _podman(output, ["pull", image], place.conf, timeout=BUILD_TIMEOUT)
            ready = _images_ready(build, sources, place, output)
            for number, store in enumerate(ready):  # a RUN step can read its container's mount table
                output.hide(str(store), f"/images/{number}")
            output.say(f"==> Building {build.name}:{build.version}")
            _podman(output, container_argv(build, place, ready), place.conf, BUILD_TIMEOUT, disk_mb=place.disk_mb)
            _load(build.image, place)
            software = _register(build, output)
    except BuildFailed as error:  # its containers are gone with its place (build_place)
        reason = output.redact(str(error))
        output.say(f"==> Failed: {reason}")
        output.flush(force=True)
        _remove_image(build.image)
        _finish(build, BuildState.FAILED, reason)
        log.info("Build %s failed: %s", build.pk, error)
        return
    except BaseException:
        output.flush(force=True)
        _remove_image(build.image)
        _finish(build, BuildState.FAILED, "The builder met an unexpected error; an operator can find it in its log.")
        raise
    log.info("Build %s added %s.", build.pk, software.image)


def runs_programs(containerfile: str) -> bool:
    """Whether a build runs anything (a RUN step): only then does it need a network."""
    from rosetta.catalog.containerfile import logical_lines

    return any(line.split(maxsplit=1)[0].upper() == "RUN" for _, line in logical_lines(containerfile))


@dataclass(frozen=True)
class BuildPlace:
    """Where one build happens: ``work`` is all the build's container sees (at /build), ``conf``
    the podman settings of the platform's side, outside its reach; ``network`` the container's."""

    work: Path
    conf: Path
    network: str | None  # None: podman's default (rootless)
    disk_mb: int | None  # what ``work`` holds at most (None: unbounded, rootless)

    @property
    def context(self) -> Path:
        return self.work / "context"


def container_argv(build: SoftwareBuild, place: BuildPlace, images: list[Path]) -> list[str]:
    """``podman run`` of the builder's container for this build: a task's limits, the builds'
    user namespace, the images it uses read-only, and inside it ``buildah build`` with a task's
    capabilities for RUN steps."""
    for_runs = _dropped(KEPT_FOR_BUILDS)
    stores = [f"/images/{number}" for number in range(len(images))]
    (place.work / "storage.conf").write_text(_storage_conf(stores))
    private_dir(place.work / "tmp")
    return [
        *_container_options(build, place, for_runs), "--env", "CONTAINERS_STORAGE_CONF=/build/storage.conf",
        # Everything buildah writes goes to /build, within the build's disk: its temporary files too.
        "--read-only", "--env", "TMPDIR=/build/tmp",
        "--mount", f"type=bind,source={place.work},target=/build,U=true",  # the build's root owns it
        *_read_only(images, stores), BUILDER_IMAGE, build.image,
        # what rosetta-build passes to `buildah build`:
        "--pull=never", "--layers=false", "--no-cache", "--jobs", "1", "--cap-drop", ",".join(for_runs),
        "--label", f"rosetta.build={build.pk}", "--label", f"rosetta.owner={build.owner_id}",
        "--file", "/build/context/Containerfile", "--tag", build.image, "/build/context",
    ]  # fmt: skip


def _read_only(sources: list[Path], targets: list[str]) -> list[str]:
    options = []
    for source, target in zip(sources, targets, strict=True):
        options += ["--mount", f"type=bind,source={source},target={target},ro=true"]
    return options


def _container_options(build: SoftwareBuild, place: BuildPlace, for_runs: list[str]) -> list[str]:
    """What every container of the builder's gets: the builds' ids, a task's limits, few capabilities."""
    for_buildah = [capability for capability in for_runs if capability not in KEPT_FOR_BUILDAH]
    rootful = os.geteuid() == 0
    ids = f"0:{settings.BUILD_ID_BASE}:{USER_NAMESPACE_SIZE}"
    return [
        "run", "--rm", "--name", container_name(build), "--pull=never", "--init",
        "--label", f"{BUILDER_LABEL}={_instance()}", "--label", f"rosetta.build={build.pk}",
        "--log-driver", "none",  # its output comes to us (and its log is kept to MAX_LOG), not to a file of podman's
        *(["--uidmap", ids, "--gidmap", ids] if rootful else []),
        *(["--network", place.network] if place.network else []),
        "--cap-drop", ",".join(for_buildah), "--memory", MEMORY, "--memory-swap", MEMORY,
        "--cpu-period", "100000", "--cpu-quota", "100000", "--pids-limit", "4096",
    ]  # fmt: skip


def _dropped(kept: tuple[str, ...]) -> list[str]:
    from rosetta.computing.engines.base import DROPPED_CAPABILITIES

    return [capability for capability in DROPPED_CAPABILITIES if capability not in kept]


def _storage_conf(additional: list[str]) -> str:
    """buildah's store inside the container: the build's own, over the images it uses."""
    stores = ", ".join(f'"{store}"' for store in additional)
    return (
        '[storage]\ndriver = "overlay"\ngraphroot = "/build/store"\nrunroot = "/build/run"\n'
        f"[storage.options]\nadditionalimagestores = [{stores}]\n"
    )


def container_name(build: SoftwareBuild) -> str:
    return f"rosetta-build-{_instance()[:12]}-{build.pk}"


def preparing_name(build: SoftwareBuild) -> str:
    return f"{container_name(build)}-images"


def _instance() -> str:
    from rosetta.computing.instance import instance_id

    return instance_id()


def _images(build: SoftwareBuild) -> tuple[list[str], list[str]]:
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


@contextlib.contextmanager
def build_place(build: SoftwareBuild, network: bool = True, containerfile: str | None = None):
    """A private directory for the build: its container's /build (the Containerfile as the
    whole context) and, beside it, podman's settings. With ``network`` (something runs) the
    container gets the builder's own network, drawn from the task pool and fenced in by the
    task firewall (builds run one at a time, so they never share it at once); else none."""
    from rosetta.computing.engines.podman import local_containers_conf

    base_conf = local_containers_conf()
    directory = Path(tempfile.mkdtemp(prefix=f"build-{build.pk}-", dir=private_dir(home() / "builds")))
    try:
        work, disk_mb = _bounded_dir(directory / "work", disk_limit_mb())
        private_dir(work / "context")
        private_dir(work / "in")
        context_file = work / "context" / "Containerfile"
        context_file.write_text(build.containerfile if containerfile is None else containerfile)
        context_file.chmod(0o644)  # COPY keeps a file's mode: as a user's own checkout has it, not our umask's
        conf = private_dir(directory / "podman") / "containers.conf"
        conf.write_text(base_conf.read_text())
        if os.geteuid() != 0:
            chosen = None if network else "none"
        elif network:  # rootful: a network of our own and the firewall's fence
            _fence()
            chosen = builder_network(base_conf)
        else:
            chosen = "none"
        yield BuildPlace(work=work, conf=conf, network=chosen, disk_mb=disk_mb)
    except BaseException:
        _remove_build_containers(build)  # before its disk goes: a container cut short may still use it
        raise
    finally:
        _remove_build_dir(directory)


def disk_limit_mb() -> int:
    """The disk a build may fill while it runs: its own store, the layer it makes (as a
    container's changes, then committed) and the image it hands back."""
    return MAX_DISK_MB or 2 * MAX_IMAGE_MB + 512


def _bounded_dir(path: Path, size_mb: int) -> tuple[Path, int | None]:
    """``path`` as a private directory holding at most ``size_mb`` MiB: a file system of its own
    (ext4, in a sparse file beside it, so it takes only what is written), which a build that
    fills it finds full at once, wherever it writes. Only root can mount one; rootless, the
    directory is unbounded (None)."""
    private_dir(path)
    if os.geteuid() != 0:
        return path, None
    disk = path.with_name(f"{path.name}.disk")
    with open(disk, "xb") as sparse:
        sparse.truncate(size_mb * 2**20)
    # No journal (it is thrown away after one build), an inode per 4 KiB (package installs make many small files).
    for argv in (
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-i", "4096", "-O", "^has_journal", "-E", "nodiscard", str(disk)],
        ["mount", "-o", "loop,nosuid,nodev", str(disk), str(path)],
    ):
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
        )
        if result.returncode != 0:
            raise BuildFailed(f"The build's disk could not be made: {_last_line(result.stderr)}")
    (path / "lost+found").rmdir()
    path.chmod(0o700)
    return path, size_mb


def _remove_build_dir(directory: Path) -> None:
    """A build's directory, its disk unmounted first (the loop device goes with it)."""
    for mount in _mounts_under(directory):
        if subprocess.run(["umount", mount], capture_output=True, timeout=120, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", mount], capture_output=True, timeout=120, check=False)
    shutil.rmtree(directory, ignore_errors=True)


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or under ``directory``, deepest first."""
    inside = []
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            point = re.sub(r"\\([0-7]{3})", lambda code: chr(int(code[1], 8)), line.split()[4])  # \040: a space
            if point == str(directory) or point.startswith(f"{directory}/"):
                inside.append(point)
    return sorted(inside, key=len, reverse=True)


def _images_ready(build: SoftwareBuild, images: list[str], place: BuildPlace, output: BuildLog) -> list[Path]:
    """Each image the build uses as a store of its own, in the builds' ids, which its container
    gets read-only: made the first time a build uses that image under that name (it takes as
    long as copying the image), kept while this machine has the image. Nothing of a build's
    ever goes into one, and a build sees only those of the images it names."""
    if _run(["podman", "image", "exists", BUILDER_IMAGE], place.conf, timeout=60).returncode != 0:
        raise BuildFailed(
            f"This machine has no builder image ({BUILDER_IMAGE}); an operator makes it with "
            "`rosetta build-image builder` (scripts/setup.sh does)."
        )
    ready_dir = private_dir(home() / "build-images")
    _forget_removed_images(ready_dir, place.conf)
    stores = []
    for image in images:
        result = _run(["podman", "image", "inspect", "--format", "{{.Id}}", image], place.conf, timeout=60)
        if result.returncode != 0:
            raise BuildFailed(f"{image} cannot be used: {_last_line(result.stderr)}")
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
        result = _run(argv, place.conf, timeout=BUILD_TIMEOUT)
        if result.returncode != 0:
            raise BuildFailed(f"{image} cannot be used: {_last_line(result.stderr)}")
        argv = [
            "podman", *_container_options_for_preparing(place), "--name", name, "--entrypoint", "buildah",
            "--mount", f"type=bind,source={filling},target=/prepare,U=true", BUILDER_IMAGE,
            "--root", "/prepare/store", "--runroot", "/prepare/run", "--storage-driver", "overlay",
            "pull", "--quiet", "docker-archive:/prepare/image.tar",
        ]  # fmt: skip
        try:
            result = _run(argv, place.conf, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"Preparing {image} took longer than {BUILD_TIMEOUT / 60:g} minutes.") from None
        if result.returncode != 0:
            raise BuildFailed(f"{image} could not be prepared for the build: {_last_line(result.stderr)}")
        (filling / "store").rename(store)
    finally:
        shutil.rmtree(filling, ignore_errors=True)


def _container_options_for_preparing(place: BuildPlace) -> list[str]:
    rootful = os.geteuid() == 0
    ids = f"0:{settings.BUILD_ID_BASE}:{USER_NAMESPACE_SIZE}"
    return [
        "run", "--rm", "--pull=never", "--label", f"{BUILDER_LABEL}={_instance()}", "--network", "none",
        *(["--uidmap", ids, "--gidmap", ids] if rootful else []),
        "--cap-drop", ",".join(_dropped(KEPT_FOR_BUILDS + KEPT_FOR_BUILDAH)), "--memory", MEMORY,
    ]  # fmt: skip


def _forget_removed_images(ready_dir: Path, conf: Path) -> None:
    """Stores of images this machine no longer has (removed, or a name moved to another image)."""
    for store in ready_dir.iterdir():
        image_id = store.name.partition("-")[0]
        gone = _run(["podman", "image", "exists", image_id], conf, timeout=60).returncode != 0
        if store.name.startswith(".filling-") or gone:
            shutil.rmtree(store, ignore_errors=True)


def _load(image: str, place: BuildPlace) -> None:
    """The container's result into this machine's store, as ``image`` whatever name the archive
    gives (the container is gone by now, but what it wrote is the user's: no symlink is followed)."""
    try:
        out = os.open(place.work / "out", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            archive = os.open("image.tar", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=out)
        finally:
            os.close(out)
    except OSError:
        raise BuildFailed("The build made no image.") from None
    size = os.fstat(archive).st_size
    if size > MAX_IMAGE_MB * 2**20:  # not even into this machine's store
        os.close(archive)
        raise BuildFailed(_too_large(size))
    try:
        result = subprocess.run(
            ["skopeo", "copy", "--quiet", f"docker-archive:/proc/self/fd/{archive}", f"containers-storage:{image}"],
            capture_output=True, text=True, env=_env(place.conf), timeout=BUILD_TIMEOUT, check=False,
            stdin=subprocess.DEVNULL, pass_fds=(archive,), umask=STORE_UMASK,
        )  # fmt: skip
    finally:
        os.close(archive)
    if result.returncode != 0:
        raise BuildFailed(f"The built image could not be added to this machine's store: {_last_line(result.stderr)}")


def _remove_build_containers(build: SoftwareBuild | None = None) -> None:
    """The builder's containers (one build's, or all of this instance's): a build cut short
    (time limit, a killed builder) leaves its container running without its podman client."""
    from rosetta.computing.engines.podman import local_containers_conf

    conf = local_containers_conf()
    if build is not None:
        _run(["podman", "rm", "--force", "--time", "0", container_name(build), preparing_name(build)], conf, 120)
        return
    listed = _run(["podman", "ps", "--all", "--quiet", "--filter", f"label={BUILDER_LABEL}={_instance()}"], conf, 60)
    for container in listed.stdout.split():
        _run(["podman", "rm", "--force", "--time", "0", container], conf, timeout=120)


def builder_network(base_conf: Path) -> str:
    """The builder's network, made when first needed (``remove_builder_network`` at exit)."""
    from rosetta.computing.engines.podman import TASK_NETWORK_OPTIONS

    name = network_name()
    if _run(["podman", "network", "exists", name], base_conf, timeout=60).returncode != 0:
        result = _run(["podman", "network", "create", *TASK_NETWORK_OPTIONS, name], base_conf, timeout=120)
        if result.returncode != 0:
            raise BuildFailed(f"No network for the build: {_last_line(result.stderr)}")
    return name


def remove_builder_network() -> None:
    from rosetta.computing.engines.podman import local_containers_conf

    if os.geteuid() == 0:
        _run(["podman", "network", "rm", "--force", network_name()], local_containers_conf(), timeout=120)


_fenced = False  # whether this process has put the firewall's rules in place


def _fence() -> None:
    """The task firewall, as the controller puts it in place before any task starts: applied
    once by this process, and again whenever one of its jumps has gone (a flushed firewall)."""
    global _fenced
    from urllib.parse import urlsplit

    from rosetta.computing import firewall
    from rosetta.computing.errors import ComputingError
    from rosetta.computing.transports.local import LocalTransport

    if _fenced and all(
        subprocess.run(firewall.check_jump(chain, rule), capture_output=True, timeout=60).returncode == 0
        for chain, rule in firewall.jumps()
    ):
        return
    public = urlsplit(settings.PUBLIC_URL)
    port = public.port or (443 if public.scheme == "https" else 80)
    try:
        asyncio.run(firewall.apply(LocalTransport(), os.geteuid(), port))
    except ComputingError as error:
        raise BuildFailed(f"Builds cannot be fenced in on this machine, so none runs: {error}") from None
    _fenced = True


def network_name() -> str:
    from rosetta.computing.instance import instance_id

    return f"rosetta-builds-{instance_id()[:12]}"


def _env(conf: Path) -> dict[str, str]:
    """podman's environment: its settings and nothing of the platform's."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(conf.parent),
        "TMPDIR": os.environ.get("TMPDIR", "/var/tmp"),
        "CONTAINERS_CONF": str(conf),
        "LANG": "C.UTF-8",
    }


def _store_paths(conf: Path) -> list[tuple[str, str]]:
    """Where this machine's podman keeps images and containers, and the names the build's log
    gives those places instead (a RUN step can read its container's mount table)."""
    found = _run(["podman", "info", "--format", "{{.Store.GraphRoot}}\n{{.Store.RunRoot}}"], conf, timeout=60)
    if found.returncode != 0:
        return []
    paths = [line.strip() for line in found.stdout.splitlines()]
    return [(path, instead) for path, instead in zip(paths, ("PODMAN_STORE", "PODMAN_RUN"), strict=False) if path]


def _run(argv: list[str], conf: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=_env(conf),
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        umask=STORE_UMASK,
    )


def _podman(output: BuildLog, args: list[str], conf: Path, timeout: float, disk_mb: int | None = None) -> None:
    """Run podman, its output into the build's log as it comes; BuildFailed unless it succeeds in
    time (and, with ``disk_mb``, within that much disk)."""
    process = subprocess.Popen(
        ["podman", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(conf),
        start_new_session=True,  # the whole group is killed at the deadline
        umask=STORE_UMASK,
    )
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    last_error = ""
    out_of_disk = False
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        pending = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill(process)
                raise BuildFailed(f"The build took longer than {BUILD_TIMEOUT / 60:g} minutes and was stopped.")
            if selector.select(timeout=min(left, FLUSH_EVERY)):
                chunk = process.stdout.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = output.redact(line.decode(errors="replace"))
                    output.add(text)
                    if text.startswith("Error:"):
                        last_error = text
                    out_of_disk = out_of_disk or "no space left on device" in text.lower()
            output.flush()
        if pending:
            output.add(pending.decode(errors="replace"))
    status = process.wait()
    output.flush(force=True)
    if status != 0 and disk_mb is not None and out_of_disk:
        raise BuildFailed(
            f"The build filled its {disk_mb:,} MiB of disk and was stopped (an image may be at most "
            f"{MAX_IMAGE_MB:,} MiB)."
        )
    if status != 0:
        raise BuildFailed(_plain(last_error) or f"podman {args[0]} ended with status {status}.")


def _plain(error: str) -> str:
    """podman's last error, said for a person: which step failed and how."""
    text = error.removeprefix("Error:").strip()
    if text.startswith("building at STEP"):
        step, _, how = text.partition(": ")
        how = how.replace("while running runtime: ", "")
        return f"The build failed {step.removeprefix('building ')}: {how}".rstrip(": ")
    return text


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _register(build: SoftwareBuild, output: BuildLog) -> Software:
    """The built image as the owner's entry, after its size is checked; with the build's success."""
    from rosetta.registry import PUSHER

    size, digest = _inspect(build.image)
    if size > MAX_IMAGE_MB * 2**20:
        raise BuildFailed(_too_large(size))
    output.say(f"==> Built {build.image} ({size / 2**20:,.1f} MiB)")
    declared = dict(build.declared)
    group_id = declared.pop("group", None)
    software = Software(
        owner=build.owner,
        name=build.name,
        version=build.version,
        image=build.image,
        image_digest=digest,
        source=Source.BUILD,
        group_id=group_id,
        **declared,
    )
    try:
        software.full_clean(validate_constraints=False)
        # The log's last line goes with the success: whoever sees the one sees the other.
        # Not the digest the catalogue shows once the pusher has copied the image: say which it is.
        output.add(
            f"==> Added {software.reference} to the catalogue (this machine's image digest {digest}; the "
            "catalogue shows the manifest digest in the platform's registry once the image is copied there)."
        )
        with transaction.atomic():
            software.save()
            updated = SoftwareBuild.objects.filter(pk=build.pk, state=BuildState.BUILDING).update(
                state=BuildState.SUCCEEDED, software=software, finished=timezone.now(), reason="", log=output.text
            )
            if not updated:
                raise BuildFailed("The build was cancelled meanwhile.")
            after_commit(PUSHER)  # to the platform's registry, for other machines
    except IntegrityError:
        raise BuildFailed(
            f"Meanwhile you added other software called {build.name}:{build.version}; nothing was added."
        ) from None
    except Exception as error:
        from django.core.exceptions import ValidationError

        if isinstance(error, ValidationError):
            raise BuildFailed(" ".join(error.messages)) from None
        raise
    return software


def _too_large(size: int) -> str:
    return f"The image is {size / 2**20:,.0f} MiB; at most {MAX_IMAGE_MB:,} MiB are allowed."


def _inspect(image: str) -> tuple[int, str]:
    from rosetta.computing.engines.podman import local_containers_conf

    argv = ["podman", "image", "inspect", "--format", "{{.Size}} {{.Digest}}", image]
    result = _run(argv, local_containers_conf(), 60)
    size, _, digest = result.stdout.strip().partition(" ")
    if result.returncode != 0 or not size.isdigit():
        raise BuildFailed(f"The built image cannot be found: {_last_line(result.stderr)}")
    return int(size), digest


def _remove_image(image: str) -> None:
    from rosetta.computing.engines.podman import local_containers_conf

    if image:
        _run(["podman", "image", "rm", "--force", image], local_containers_conf(), 120)


def _finish(build: SoftwareBuild, state: str, reason: str) -> None:
    SoftwareBuild.objects.filter(pk=build.pk).update(state=state, reason=reason[:2000], finished=timezone.now())


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no reason given"


LOOP_DEVICE = re.compile(r"/dev/loop\d+")  # which of this machine's loop devices holds the build's disk


class BuildLog:
    """The build's log in the database, written every FLUSH_EVERY seconds, at most MAX_LOG. It
    names no path of this machine's platform: the build's own places by what its container
    calls them (``hide``), anything else under ROSETTA_HOME by that name."""

    def __init__(self, build: SoftwareBuild) -> None:
        self.build_id = build.pk
        self.text = build.log
        self.written = len(self.text)
        self.last_flush = 0.0
        self.truncated = False
        self.hidden: list[tuple[str, str]] = []
        self.home = str(home())

    def hide(self, text: str, instead: str) -> None:
        self.hidden.append((text, instead))

    def redact(self, line: str) -> str:
        for text, instead in self.hidden:
            line = line.replace(text, instead)
        return LOOP_DEVICE.sub("/dev/loop", line.replace(self.home, "ROSETTA_HOME"))

    def add(self, line: str) -> None:
        line = self.redact(line).replace("\x00", "\ufffd")  # a database's text holds no NUL
        if self.truncated:
            return
        if len(self.text) + len(line) + 1 > MAX_LOG:
            self.text += "... (the rest of the log is left out: it is longer than 1 MiB)\n"
            self.truncated = True
            return
        self.text += line + "\n"

    def say(self, line: str) -> None:
        self.add(line)
        self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if len(self.text) == self.written or (not force and now - self.last_flush < FLUSH_EVERY):
            return
        SoftwareBuild.objects.filter(pk=self.build_id).update(log=self.text)
        self.written = len(self.text)
        self.last_flush = now
