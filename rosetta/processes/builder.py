"""`rosetta builder`: builds users' Containerfiles as they are requested (rosetta.builds)."""

from __future__ import annotations

import click

from rosetta.core.django_setup import configure_logging, setup_django


@click.command("builder")
def command():
    """Build users' Containerfiles as they are requested (run by `rosetta run`)."""
    setup_django()
    from rosetta.builds.worker import run_builder

    configure_logging()
    try:
        run_builder()
    except KeyboardInterrupt:
        pass
