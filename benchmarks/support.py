"""What the benchmarks share: a Rosetta of their own, and the raw podman start they compare with."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rosetta.computing.contract import ContainerSpec
from rosetta.computing.engines.podman import PodmanEngine
from tests.instance import Platform

POLL_INTERVAL = 0.005


def until_ok(client: httpx.Client, url: str, headers: dict | None = None, timeout: float = 300) -> None:
    """The same loop for both sides of a comparison: GET until the first 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get(url, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"{url} never answered 200")


@contextlib.contextmanager
def own_platform(ssh_door: bool = False, **settings: str) -> Iterator[Platform]:
    """`rosetta run` in a temporary home, as an operator starts it (with ROSETTA_* ``settings``)."""
    with tempfile.TemporaryDirectory(prefix="rosetta-bench-") as home:
        platform = Platform(Path(home), ssh_door=ssh_door, settings=settings)
        platform.set_up()
        platform.start()
        try:
            yield platform
        finally:
            platform.stop()


def raw_start(platform: Platform, client: httpx.Client, name: str, cpus: float = 1.0, memory_mb: int = 512) -> str:
    """`podman run -d` with the argv the platform's engine builds, then GET on its published
    port until 200; the container's name (rosetta-NAME)."""
    spec = ContainerSpec(
        task_id=name,
        instance="benchmark",
        image="localhost/rosetta/hello",
        port=8080,
        cpus=cpus,
        memory_mb=memory_mb,
        env={"BASE_PORT": "8080"},
    )
    container = platform.podman(*PodmanEngine().run_argv(spec)[1:]).strip()  # podman() adds the executable
    port = json.loads(platform.podman("inspect", container))[0]["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    until_ok(client, f"http://127.0.0.1:{port}/")
    return f"rosetta-{name}"


def remove(platform: Platform, *names: str) -> None:
    platform.podman("rm", "--force", "--time", "0", "--ignore", *names)
