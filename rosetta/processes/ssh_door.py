"""`rosetta ssh-door`: the SSH front door, a jump host to users' own SSH tasks (rosetta.gateway.ssh_door)."""

from __future__ import annotations

import socket
import sys

import click

from rosetta.core.django_setup import configure_logging, setup_django
from rosetta.processes.checks import NotHere


@click.command("ssh-door")
@click.option(
    "--host", default="localhost", show_default=True, help="Address to listen on ('localhost' = 127.0.0.1 and ::1)."
)
@click.option("--port", type=int, help="Port to listen on (default: ROSETTA_SSH_PORT).")
@click.option("--listen-fds", help="Listening sockets inherited from `rosetta run` (descriptors).")
def command(host, port, listen_fds):
    """Run the SSH front door: a jump host to users' own SSH tasks, for their registered keys.

    SIGTERM: stop accepting, let open sessions go on (up to 10 minutes), then exit. SIGINT: exit now."""
    setup_django()
    from django.core.exceptions import ImproperlyConfigured

    from rosetta.gateway.proxy import listening_sockets
    from rosetta.gateway.ssh_access import door_address, door_port, host_key, host_port
    from rosetta.gateway.ssh_door import DoorConfig, run_door
    from rosetta.processes.supervisor import report_ready

    try:
        address, port = door_address(), port or door_port()
    except ImproperlyConfigured as error:
        raise click.ClickException(str(error)) from None
    if port is None or address is None:
        raise click.ClickException("The SSH front door is off (ROSETTA_SSH_PORT=off).")
    config = DoorConfig(host_key=host_key(), address=host_port(*address))
    configure_logging()
    if listen_fds:
        sockets = [socket.socket(fileno=int(fd)) for fd in listen_fds.split(",")]
    else:
        try:
            sockets = listening_sockets([(host, port)])[0]
        except OSError as error:
            raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from None
    sys.exit(run_door(config, sockets, ready=report_ready))


def door_off() -> NotHere | None:
    """Why `rosetta run` starts no SSH front door (None: it starts one); a bad setting stops it."""
    setup_django()
    from django.core.exceptions import ImproperlyConfigured

    from rosetta.gateway.ssh_access import door_port

    try:
        return NotHere("ROSETTA_SSH_PORT=off") if door_port() is None else None
    except ImproperlyConfigured as error:
        raise click.ClickException(str(error)) from None
