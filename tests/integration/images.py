"""Tiny images for tests, built FROM the built-in `hello` (no registry needed)."""

import os
import subprocess
import tempfile
from pathlib import Path


def build_test_image(home: Path, tag: str, containerfile: str) -> str:
    env = {**os.environ, "CONTAINERS_CONF": str(home / "podman" / "containers.conf")}
    with tempfile.TemporaryDirectory() as context:
        Path(context, "Containerfile").write_text(containerfile)
        subprocess.run(["podman", "build", "--quiet", "--pull=never", "-t", tag, context], env=env, check=True,
                       capture_output=True)
    return tag
