"""`rosetta pusher`: copies catalogue images into the platform's registry as they are added or
change (rosetta.registry.worker, with the catalogue's pass rosetta.catalog.pushes)."""

from __future__ import annotations

import click

from rosetta.core.django_setup import configure_logging, setup_django
from rosetta.processes.checks import NotHere
from rosetta.processes.registry import registry_missing


@click.command("pusher")
def command():
    """Push catalogue images into the registry as they are added or change (run by `rosetta run`)."""
    setup_django()
    from rosetta.catalog.pushes import reconcile_catalogue
    from rosetta.registry.worker import run_pusher

    configure_logging()
    try:
        run_pusher(reconcile_catalogue)
    except KeyboardInterrupt:
        pass


def pusher_missing() -> NotHere | None:
    """Why `rosetta run` starts no pusher: there is no registry to push to (None: it starts one)."""
    return None if registry_missing() is None else NotHere("no registry to push to")
