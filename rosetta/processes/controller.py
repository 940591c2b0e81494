"""`rosetta controller`: starts, watches and stops tasks' containers and jobs (rosetta.tasks.controller)."""

from __future__ import annotations

import asyncio

import click

from rosetta.core.django_setup import configure_logging, setup_django
from rosetta.processes.checks import check_id_region


@click.command("controller")
def command():
    """Run the controller that starts, watches and stops task containers."""
    setup_django()
    check_id_region()
    from rosetta.core.processes import use_pidfd_watcher
    from rosetta.tasks.controller import Controller

    async def control() -> None:
        use_pidfd_watcher()
        await Controller().run_forever()

    configure_logging()
    try:
        # Not uvloop: under it, the pipes of `podman run -d` stay open in the daemonised conmon
        # and reading the container id never ends.
        asyncio.run(control())
    except KeyboardInterrupt:
        pass
