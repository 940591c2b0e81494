"""`rosetta registry`: the platform's image registry, its pusher, and what it holds."""

from __future__ import annotations

import os
import shutil
import sys

import click

from rosetta.cli.django_setup import setup_django


@click.group("registry", invoke_without_command=True)
@click.pass_context
def registry_group(ctx):
    """Run the platform's image registry, which other machines pull catalogue images from.

    Without a subcommand: serve it on ROSETTA_REGISTRY_LISTEN (read-only: pulls only; pushes go
    through a private writer of `rosetta registry pusher` and of operator commands)."""
    if ctx.invoked_subcommand is None:
        serve()


def serve() -> None:
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


@registry_group.command("pusher")
def pusher():
    """Push catalogue images into the registry as they are added or change (run by `rosetta run`)."""
    setup_django()
    from rosetta.catalog.pushes import reconcile_catalogue
    from rosetta.cli.django_setup import configure_logging
    from rosetta.registry.worker import run_pusher

    configure_logging()
    try:
        run_pusher(reconcile_catalogue)
    except KeyboardInterrupt:
        pass


@registry_group.command("push")
@click.argument("names", nargs=-1)
def push(names):
    """Push now the local images of software NAMES (default: all) that the registry lacks as they are."""
    setup_django()
    from rosetta.catalog.models import Software
    from rosetta.catalog.pushes import push_now
    from rosetta.registry.push import PushFailed

    softwares = Software.objects.filter(name__in=names) if names else Software.objects.all()
    unknown = set(names) - {software.name for software in softwares}
    if unknown:
        raise click.ClickException(f"No software called {', '.join(sorted(unknown))}.")
    try:
        lines = push_now(softwares)
    except PushFailed as error:
        raise click.ClickException(str(error)) from None
    for line in lines or ["Nothing to push (`rosetta registry list` shows where each image stands)."]:
        click.echo(line)


@registry_group.command("list")
def list_images():
    """Show where each software's image stands in the registry, and what remote resources run."""
    setup_django()
    from rosetta.catalog.models import RegistryState, Software
    from rosetta.registry import is_local, pinned
    from rosetta.registry.config import address

    where = address()
    click.echo(f"Registry address: {where or 'not known yet (not started)'}")
    for software in Software.objects.select_related("owner"):
        who = f"{software.owner.username}/" if software.owner else ""
        line = f"{who + software.reference:<28} {software.registry_state:<9} {software.image}"
        if software.registry_state == RegistryState.PUSHED and software.registry_image == software.image:
            line += f"  ->  {pinned(where or 'ADDRESS', software.image, software.registry_digest)}"
        elif software.registry_state == RegistryState.FAILED:
            line += f"  ({software.registry_reason})"
        elif not is_local(software.image):
            line += "  (pulled from its own registry)"
        click.echo(line)


def registry_commands(me: list[str]) -> dict[str, list[str]]:
    """For `rosetta run`: the registry and its pusher, unless the platform runs none."""
    from rosetta.registry.config import EXECUTABLE, registry_enabled

    if not registry_enabled():
        return {}
    if shutil.which(EXECUTABLE) is None:
        click.echo(
            f"rosetta: {EXECUTABLE} is not installed (scripts/setup.sh installs it): running without the "
            "platform's registry, so images of this machine run on this machine only.",
            err=True,
        )
        return {}
    return {"registry": [*me, "registry"], "pusher": [*me, "registry", "pusher"]}


def push_built_image(image: str) -> list[str]:
    """After `rosetta build-image`: copy the new build for every catalogue entry that uses it."""
    setup_django()
    from django.db import DatabaseError, connection

    from rosetta.catalog.demo import push_to_registry
    from rosetta.catalog.models import Software

    try:
        if Software._meta.db_table not in connection.introspection.table_names():
            return []  # no database yet: `rosetta setup` pushes what the catalogue uses
        softwares = list(Software.objects.filter(image__in=[image, f"{image}:latest"]))
    except DatabaseError:
        return []
    return push_to_registry(softwares)
