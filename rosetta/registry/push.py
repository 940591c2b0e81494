"""Copying this machine's images into the platform's registry.

A push goes through a private writer (``Writer``): a ``docker-registry`` over the same storage as
the public one, on a free loopback port, with a password made for this writer only and kept in
a private directory (the client reads it from an auth file, never from its argv). ``skopeo``
copies the exact local image (by its id, not its name, so a rebuild half-way changes nothing) and
writes the manifest digest the registry now holds; that digest, checked against the registry,
is what the catalogue records (``rosetta.catalog.pushes``).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from rosetta.core.processes import dies_with_parent
from rosetta.registry import DIGEST, repository
from rosetta.registry.config import EXECUTABLE, free_port, registry_home, write_config, write_private, writer_config

log = logging.getLogger("rosetta.registry")

PUSH_TIMEOUT = 3600.0  # a multi-gigabyte image on a slow disk
READY_TIMEOUT = 10.0
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


class PushFailed(Exception):
    """The copy did not happen; the message says why in plain words."""


def podman_env() -> dict[str, str]:
    from rosetta.computing.engines.podman import local_containers_conf

    return {**os.environ, "CONTAINERS_CONF": str(local_containers_conf())}


def local_images() -> dict[str, str]:
    """This machine's images: ``name:tag`` -> image id (one ``podman images``)."""
    result = subprocess.run(
        ["podman", "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise PushFailed(f"podman could not list this machine's images: {_last_line(result.stderr)}")
    images = {}
    for line in result.stdout.splitlines():
        image_id, _, name = line.partition(" ")
        images[name.strip()] = image_id.removeprefix("sha256:")
    return images


def local_image_id(image: str, images: dict[str, str] | None = None) -> str | None:
    """The id of the local image ``image`` names, or None when this machine has none."""
    name = image if "@" in image or ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
    if images is not None and name in images:
        return images[name]
    if images is not None and "@" not in image:
        return None
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _bcrypt(password: str) -> str:
    """The registry's htpasswd takes bcrypt only. The password is 256 random bits, so the lowest
    cost is as safe as any, and the registry checks it on every request of a push."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


class Writer:
    """A private registry that accepts pushes, for as long as the ``with`` block lasts."""

    def __init__(self) -> None:
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None
        self.address = ""

    @property
    def authfile(self) -> Path:
        assert self.directory is not None
        return self.directory / "auth.json"

    def __enter__(self) -> Writer:
        if shutil.which(EXECUTABLE) is None:
            raise PushFailed(f"{EXECUTABLE} is not installed (Debian package docker-registry).")
        self.directory = Path(tempfile.mkdtemp(prefix="writer-", dir=registry_home()))
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start(self) -> None:
        """Start (or restart) the writer on a free port with a new password."""
        assert self.directory is not None
        self.stop()
        password = secrets.token_urlsafe(32)
        htpasswd = self.directory / "htpasswd"
        write_private(htpasswd, f"rosetta:{_bcrypt(password)}\n")
        for _attempt in range(3):  # the port was free when chosen; another process may take it first
            self.address = f"127.0.0.1:{free_port('127.0.0.1')}"
            credentials = base64.b64encode(f"rosetta:{password}".encode()).decode()
            write_private(self.authfile, json.dumps({"auths": {self.address: {"auth": credentials}}}))
            config = write_config(self.directory / "config.yml", writer_config(self.address, htpasswd))
            # Its log stays here: it reports every 404 of a push's "do you have this blob?" as an error.
            with open(self.directory / "writer.log", "ab") as output:
                self.process = subprocess.Popen(
                    dies_with_parent([EXECUTABLE, "serve", str(config)]),  # even if this process is killed
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return
            self.stop()
        said = _last_line((self.directory / "writer.log").read_text(errors="replace"))
        raise PushFailed(f"The platform's registry writer did not start: {said}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError):
                if _request(self.address, "GET", "/v2/")[0] == 401:
                    return True  # it answers, and asks for the password
            time.sleep(0.01)
        return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def manifest_digest(self, path: str, reference: str) -> str | None:
        """The digest of the manifest the registry holds at ``path``:``reference`` (a tag or digest)."""
        credentials = json.loads(self.authfile.read_text())["auths"][self.address]["auth"]
        headers = {"Accept": MANIFEST_TYPES, "Authorization": f"Basic {credentials}"}
        status, answer = _request(self.address, "HEAD", f"/v2/{path}/manifests/{reference}", headers)
        return answer.get("Docker-Content-Digest") if status == 200 else None


def _request(address: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One plain-HTTP request to a registry on this machine: (status, headers)."""
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, response.headers  # case-insensitive .get()
    finally:
        connection.close()


@dataclass
class Pushed:
    digest: str
    source: str  # the local image id that was copied
    seconds: float


def push_image(image: str, writer: Writer, images: dict[str, str] | None = None) -> Pushed:
    """Copy the local image ``image`` into the registry; what the registry then holds."""
    started = time.monotonic()
    source = local_image_id(image, images)
    if source is None:
        raise PushFailed(f"Image {image} does not exist on this machine.")
    if not writer.alive():
        writer.start()
    path, tag = repository(image)
    assert writer.directory is not None
    digest_file = writer.directory / f"digest-{secrets.token_hex(8)}"
    argv = [
        "skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-authfile", str(writer.authfile),
        "--digestfile", str(digest_file), f"containers-storage:@{source}", f"docker://{writer.address}/{path}:{tag}",
    ]  # fmt: skip
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=podman_env(), timeout=PUSH_TIMEOUT)
    except FileNotFoundError:
        raise PushFailed("skopeo is not installed (Debian package skopeo).") from None
    except subprocess.TimeoutExpired:
        raise PushFailed(f"Copying took longer than {PUSH_TIMEOUT:g} s.") from None
    try:
        digest = digest_file.read_text().strip() if result.returncode == 0 else ""
    finally:
        digest_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise PushFailed(f"skopeo could not copy it: {_last_line(result.stderr)}")
    if not DIGEST.match(digest) or writer.manifest_digest(path, digest) != digest:
        raise PushFailed(f"The registry does not hold the manifest skopeo reported ({digest[:80]!r}).")
    return Pushed(digest, source, time.monotonic() - started)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no message")[:500]
