import secrets
from functools import cache

from rosetta.core.paths import home, read_or_create


@cache
def instance_id() -> str:
    """Identifies this installation's containers, so that two Rosettas sharing one engine
    (a test run beside a demo, say) never touch each other's tasks."""
    return read_or_create(home() / "instance_id", lambda: secrets.token_hex(6))
