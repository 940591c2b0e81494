import re

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_FACTORS_TO_MIB = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}


def parse_memory_mb(text: str) -> int:
    """'512', '512M', '1.5G', '2GiB' -> MiB. A bare number means MiB."""
    match = _MEMORY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a memory size (examples: 512M, 2G)")
    value = float(match.group(1)) * _FACTORS_TO_MIB[match.group(2).lower()]
    return int(round(value))
