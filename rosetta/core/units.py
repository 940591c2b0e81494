"""Memory sizes written one way everywhere people type or read them: 512M, 2G (MiB-based)."""

import re

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_FACTORS_TO_MIB = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}
MEMORY_EXAMPLES = "e.g. 512M or 2G"


def parse_memory_mb(text: str) -> int:
    """'512', '512M', '1.5G', '2GiB' -> MiB. A bare number means MiB."""
    match = _MEMORY.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a memory size ({MEMORY_EXAMPLES})")
    value = float(match.group(1)) * _FACTORS_TO_MIB[match.group(2).lower()]
    return int(round(value))


def format_memory(mb: int) -> str:
    """MiB -> '512M', '2G', '1.5G': what parse_memory_mb reads back."""
    if mb >= 1024 and mb % 128 == 0:
        return f"{mb / 1024:g}G"
    return f"{mb}M"
