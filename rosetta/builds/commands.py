"""The programs a build runs on the platform's side (podman, skopeo): with a bare environment
of their own, the image store's umask, a deadline, and failures said in plain words."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

from rosetta.builds import limits
from rosetta.builds.log import FLUSH_EVERY, BuildLog

# What podman and skopeo write goes into this machine's image store, whose files end up in images:
# not with the platform's private umask (skopeo, unlike podman, keeps the umask it is given, and a
# layer it adds under 077 makes its image's / 0500, which no non-root program can start in).
STORE_UMASK = 0o022


class BuildFailed(Exception):
    """The build did not give an image; the message says why in plain words."""


def tool_env(conf: Path) -> dict[str, str]:
    """podman's environment: its settings and nothing of the platform's."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(conf.parent),
        "TMPDIR": os.environ.get("TMPDIR", "/var/tmp"),
        "CONTAINERS_CONF": str(conf),
        "LANG": "C.UTF-8",
    }


def run_tool(argv: list[str], conf: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=tool_env(conf),
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        umask=STORE_UMASK,
    )


def run_podman_logged(
    output: BuildLog, args: list[str], conf: Path, timeout: float, disk_mb: int | None = None
) -> None:
    """Run podman, its output into the build's log as it comes; BuildFailed unless it succeeds in
    time (and, with ``disk_mb``, within that much disk)."""
    process = subprocess.Popen(
        ["podman", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=tool_env(conf),
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
                raise BuildFailed(f"The build took longer than {limits.BUILD_TIMEOUT / 60:g} minutes and was stopped.")
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
            f"{limits.MAX_IMAGE_MB:,} MiB)."
        )
    if status != 0:
        raise BuildFailed(plain_error(last_error) or f"podman {args[0]} ended with status {status}.")


def plain_error(error: str) -> str:
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


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no reason given"
