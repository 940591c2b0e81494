"""`rosetta registry`: the platform's image registry (CNCF Distribution, read-only), which other
machines pull catalogue images from (rosetta.registry). Its operator subcommands (push, list) are
added by rosetta.cli.registry."""

from __future__ import annotations

import os
import shutil
import sys

import click

from rosetta.core.django_setup import setup_django
from rosetta.processes.checks import NotHere


@click.group("registry", invoke_without_command=True)
@click.pass_context
def command(ctx):
    """Run the platform's image registry, which other machines pull catalogue images from.

    Without a subcommand: serve it on ROSETTA_REGISTRY_LISTEN (read-only: pulls only; pushes go
    through a private writer of `rosetta pusher` and of operator commands)."""
    if ctx.invoked_subcommand is None:
        serve()


def serve() -> None:
    """This process becomes the registry, serving on ROSETTA_REGISTRY_LISTEN (read-only)."""
    setup_django()
    from django.core.exceptions import ImproperlyConfigured

    from rosetta.registry.config import EXECUTABLE, choose_listen_address, public_config, registry_home, write_config

    executable = shutil.which(EXECUTABLE)
    if executable is None:
        raise click.ClickException(f"{EXECUTABLE} is not installed (Debian package docker-registry; scripts/setup.sh).")
    try:
        host, port = choose_listen_address()
    except ImproperlyConfigured as error:
        raise click.ClickException(str(error)) from None
    config = write_config(registry_home() / "config.yml", public_config(f"{host}:{port}"))
    click.echo(f"The platform's registry listens on {host}:{port} (read-only).", err=True)
    sys.stdout.flush()
    os.execv(executable, [executable, "serve", str(config)])


def registry_missing() -> NotHere | None:
    """Why `rosetta run` starts no registry (None: it starts one)."""
    setup_django()
    from rosetta.registry.config import EXECUTABLE, registry_enabled

    if not registry_enabled():
        return NotHere("ROSETTA_REGISTRY_LISTEN=off")
    if shutil.which(EXECUTABLE) is None:
        return NotHere(
            f"{EXECUTABLE} is not installed (scripts/setup.sh installs it): running without the platform's "
            "registry, so images of this machine run on this machine only",
            said=True,
        )
    return None
