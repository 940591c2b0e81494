import asyncio
import concurrent.futures
import logging
import os
import secrets
from functools import cache

from rosetta.core.paths import home, read_or_create

log = logging.getLogger(__name__)


@cache
def instance_id() -> str:
    """Identifies this installation's containers and jobs, so that two Rosettas sharing one
    engine (a test run beside a demo, say) never touch each other's tasks.

    The installation is its database: every machine sharing it uses the id recorded there, so
    that a controller taking over a backend from another machine recognises the work it finds.
    The first to ask records the id its home had (or a new one); the home keeps a copy."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _shared_instance_id()
    # Asked from an event loop (the ORM refuses to run there): once per process, in a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(_shared_instance_id).result()


def _shared_instance_id() -> str:
    from rosetta.computing.models import Installation

    mine = read_or_create(home() / "instance_id", lambda: secrets.token_hex(6))
    recorded, _ = Installation.objects.get_or_create(pk=1, defaults={"instance": mine})
    if recorded.instance != mine:
        log.info("this machine uses the installation's instance id %s (its home had %s)", recorded.instance, mine)
        copy = home() / f".instance_id.{os.getpid()}"
        copy.write_text(recorded.instance)
        copy.replace(home() / "instance_id")
    return recorded.instance
