import secrets
from functools import cache

from rosetta.core.paths import home


@cache
def instance_id() -> str:
    """Identifies this installation's containers, so that two Rosettas sharing one engine
    (a test run beside a demo, say) never touch each other's tasks."""
    path = home() / "instance_id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(6))
    return path.read_text().strip()
