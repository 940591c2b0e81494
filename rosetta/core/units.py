"""Sizes and durations written one way everywhere people type or read them: memory as 512M or 2G
(MiB-based), time limits as Slurm and people write them (90, 2h, 1-12:00:00)."""

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


# Time limits, as Slurm reads them (MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS,
# DAYS-HOURS:MINUTES, DAYS-HOURS:MINUTES:SECONDS) and as people write them (90m, 2h, 1h30m, 1d).
TIME_EXAMPLES = "e.g. 90, 90m, 2h, 1h30m or 1-12:00:00"
MAX_TIME_LIMIT_MINUTES = 365 * 1440
_WORDS = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?(?:(\d+)s)?$")
_CLOCK_FIELDS = {1: ("minutes",), 2: ("minutes", "seconds"), 3: ("hours", "minutes", "seconds")}
_DAY_FIELDS = {1: ("hours",), 2: ("hours", "minutes"), 3: ("hours", "minutes", "seconds")}
_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def parse_time_limit_minutes(text: str) -> int:
    """'90', '90m', '2h', '1h30m', '1-12:00:00' -> minutes (seconds round up, as Slurm does)."""
    said = str(text).strip().lower().replace(" ", "")
    seconds = _words_seconds(said) if said and not said[-1].isdigit() else _clock_seconds(said)
    if seconds is None or seconds <= 0:
        raise ValueError(f"{str(text)[:40]!r} is not a time limit ({TIME_EXAMPLES})")
    if seconds > MAX_TIME_LIMIT_MINUTES * 60:
        raise ValueError(f"{str(text)[:40]!r} is longer than a year")
    return -(-seconds // 60)


def _words_seconds(said: str) -> int | None:
    match = _WORDS.match(said)
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _clock_seconds(said: str) -> int | None:
    days, dash, clock = said.rpartition("-")
    parts = clock.split(":")
    names = (_DAY_FIELDS if dash else _CLOCK_FIELDS).get(len(parts))
    numbers = [days, *parts] if dash else parts
    if names is None or not all(number.isdigit() for number in numbers):
        return None
    total = int(days) * _SECONDS["days"] if dash else 0
    return total + sum(int(part) * _SECONDS[name] for part, name in zip(parts, names, strict=True))


def format_minutes(minutes: int) -> str:
    """Minutes as people read a limit: '45 min', '2 h', '1 h 30 min', '1 d 12 h'."""
    days, rest = divmod(int(minutes), 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(part for part in parts if part) or "0 min"


def parse_days(text: str) -> int:
    """'30d', '30' (days), '2w' (weeks) -> days (at least one)."""
    found = re.fullmatch(r"\s*(\d{1,4})\s*([dw]?)\s*", str(text).lower())
    if not found or int(found[1]) == 0:
        raise ValueError(f"{text!r} is not a number of days (e.g. 30d, 2w)")
    return int(found[1]) * (7 if found[2] == "w" else 1)
