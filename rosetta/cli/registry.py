"""`rosetta registry push|list`: what the platform's image registry holds (the registry itself is
the process rosetta.processes.registry, its pusher rosetta.processes.pusher)."""

from __future__ import annotations

import click

from rosetta.core.django_setup import setup_django
from rosetta.processes.pusher import command as pusher

# The pusher's own command is `rosetta pusher`; this name stays for operators' scripts.
old_pusher = click.Command("pusher", callback=pusher.callback, help=pusher.help, hidden=True)


@click.command("push")
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


@click.command("list")
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


def add_to(group: click.Group) -> None:
    """The operator's subcommands of `rosetta registry` (the process rosetta.processes.registry)."""
    for command in (push, list_images, old_pusher):
        group.add_command(command)


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
