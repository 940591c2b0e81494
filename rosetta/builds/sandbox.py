"""The isolated build: one build's container, its place on disk, its network, and what it hands back.

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
- the images it names, and only those, read-only (rosetta.builds.images);
- RUN steps get the network (package installs need it) on the builder's own network, drawn
  from the task pool, which the task firewall fences in (rosetta.computing.firewall): no
  service of this machine, no task, no link-local address; a build without RUN gets none;
- a task's capabilities for RUN steps (the container keeps SETFCAP and SYS_CHROOT, which buildah
  needs and which mean nothing outside its user namespace), at most 2 GiB of memory and one CPU
  for the whole build, ``ROSETTA_BUILD_TIMEOUT`` seconds in all, an image of at most
  ``ROSETTA_BUILD_MAX_IMAGE_MB``, and a log kept to 1 MiB (rosetta.builds.limits);
- a disk of its own: ``/build`` is a file system of ``ROSETTA_BUILD_MAX_DISK_MB`` (a sparse file,
  loop-mounted), the container's root is read-only and buildah's temporary files are in
  ``/build``, so a build that writes too much fails in the step that wrote, and takes its disk
  with it.

What comes out is an archive the container wrote: it is read as untrusted input (no symlink
followed, the name inside it ignored) into this machine's store under the build's own image name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from rosetta.builds import limits
from rosetta.builds.commands import STORE_UMASK, BuildFailed, last_line, run_tool, tool_env
from rosetta.builds.limits import disk_limit_mb, too_large
from rosetta.catalog.models import SoftwareBuild
from rosetta.core.paths import home, private_dir

KEPT_FOR_BUILDS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID")


# What buildah itself needs besides, in the builder's user namespace only: chroot (its isolation)
# and SETFCAP (since Linux 5.12, to map root into the namespace it runs RUN steps in).
KEPT_FOR_BUILDAH = ("SETFCAP", "SYS_CHROOT")
BUILDER_IMAGE = "localhost/rosetta/builder"
BUILDER_LABEL = "rosetta.builder"  # on build containers: the instance that runs them
USER_NAMESPACE_SIZE = 65536  # ids a build may use, as a task


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
        remove_build_containers(build)  # before its disk goes: a container cut short may still use it
        raise
    finally:
        remove_build_dir(directory)


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
            raise BuildFailed(f"The build's disk could not be made: {last_line(result.stderr)}")
    (path / "lost+found").rmdir()
    path.chmod(0o700)
    return path, size_mb


def remove_build_dir(directory: Path) -> None:
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


def container_argv(build: SoftwareBuild, place: BuildPlace, images: list[Path]) -> list[str]:
    """``podman run`` of the builder's container for this build: a task's limits, the builds'
    user namespace, the images it uses read-only, and inside it ``buildah build`` with a task's
    capabilities for RUN steps."""
    for_runs = dropped_capabilities(KEPT_FOR_BUILDS)
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
        "--label", f"{BUILDER_LABEL}={this_instance()}", "--label", f"rosetta.build={build.pk}",
        "--log-driver", "none",  # its output comes to us (and its log is kept to MAX_LOG), not to a file of podman's
        *(["--uidmap", ids, "--gidmap", ids] if rootful else []),
        *(["--network", place.network] if place.network else []),
        "--cap-drop", ",".join(for_buildah), "--memory", limits.MEMORY, "--memory-swap", limits.MEMORY,
        "--cpu-period", "100000", "--cpu-quota", "100000", "--pids-limit", "4096",
    ]  # fmt: skip


def dropped_capabilities(kept: tuple[str, ...]) -> list[str]:
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
    return f"rosetta-build-{this_instance()[:12]}-{build.pk}"


def preparing_name(build: SoftwareBuild) -> str:
    return f"{container_name(build)}-images"


def this_instance() -> str:
    from rosetta.computing.instance import instance_id

    return instance_id()


def load_result(image: str, place: BuildPlace) -> None:
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
    if size > limits.MAX_IMAGE_MB * 2**20:  # not even into this machine's store
        os.close(archive)
        raise BuildFailed(too_large(size))
    try:
        result = subprocess.run(
            ["skopeo", "copy", "--quiet", f"docker-archive:/proc/self/fd/{archive}", f"containers-storage:{image}"],
            capture_output=True, text=True, env=tool_env(place.conf), timeout=limits.BUILD_TIMEOUT, check=False,
            stdin=subprocess.DEVNULL, pass_fds=(archive,), umask=STORE_UMASK,
        )  # fmt: skip
    finally:
        os.close(archive)
    if result.returncode != 0:
        raise BuildFailed(f"The built image could not be added to this machine's store: {last_line(result.stderr)}")


def remove_build_containers(build: SoftwareBuild | None = None) -> None:
    """The builder's containers (one build's, or all of this instance's): a build cut short
    (time limit, a killed builder) leaves its container running without its podman client."""
    from rosetta.computing.engines.podman import local_containers_conf

    conf = local_containers_conf()
    if build is not None:
        run_tool(["podman", "rm", "--force", "--time", "0", container_name(build), preparing_name(build)], conf, 120)
        return
    mine = f"label={BUILDER_LABEL}={this_instance()}"
    listed = run_tool(["podman", "ps", "--all", "--quiet", "--filter", mine], conf, 60)
    for container in listed.stdout.split():
        run_tool(["podman", "rm", "--force", "--time", "0", container], conf, timeout=120)


def builder_network(base_conf: Path) -> str:
    """The builder's network, made when first needed (``remove_builder_network`` at exit)."""
    from rosetta.computing.engines.podman import TASK_NETWORK_OPTIONS

    name = network_name()
    if run_tool(["podman", "network", "exists", name], base_conf, timeout=60).returncode != 0:
        result = run_tool(["podman", "network", "create", *TASK_NETWORK_OPTIONS, name], base_conf, timeout=120)
        if result.returncode != 0:
            raise BuildFailed(f"No network for the build: {last_line(result.stderr)}")
    return name


def remove_builder_network() -> None:
    from rosetta.computing.engines.podman import local_containers_conf

    if os.geteuid() == 0:
        run_tool(["podman", "network", "rm", "--force", network_name()], local_containers_conf(), timeout=120)


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


def store_paths(conf: Path) -> list[tuple[str, str]]:
    """Where this machine's podman keeps images and containers, and the names the build's log
    gives those places instead (a RUN step can read its container's mount table)."""
    found = run_tool(["podman", "info", "--format", "{{.Store.GraphRoot}}\n{{.Store.RunRoot}}"], conf, timeout=60)
    if found.returncode != 0:
        return []
    paths = [line.strip() for line in found.stdout.splitlines()]
    return [(path, instead) for path, instead in zip(paths, ("PODMAN_STORE", "PODMAN_RUN"), strict=False) if path]
