"""What a build may take: time, memory, image size and disk (settings of the operator's). The other
modules read them as ``limits.NAME`` where they use them, so one value holds everywhere (a test lowers one)."""

from __future__ import annotations

import os

BUILD_TIMEOUT = float(os.environ.get("ROSETTA_BUILD_TIMEOUT", "1800"))
MAX_IMAGE_MB = int(os.environ.get("ROSETTA_BUILD_MAX_IMAGE_MB", "4096"))
MAX_DISK_MB = int(os.environ.get("ROSETTA_BUILD_MAX_DISK_MB", "0"))  # 0: twice the image's limit, and 512 MiB
MEMORY = "2g"


def disk_limit_mb() -> int:
    """The disk a build may fill while it runs: its own store, the layer it makes (as a
    container's changes, then committed) and the image it hands back."""
    return MAX_DISK_MB or 2 * MAX_IMAGE_MB + 512


def too_large(size: int) -> str:
    return f"The image is {size / 2**20:,.0f} MiB; at most {MAX_IMAGE_MB:,} MiB are allowed."
