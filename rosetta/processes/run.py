"""`rosetta run`: every process of the table (rosetta.processes.table) on this machine, each
restarted if it dies, under one supervisor (rosetta.processes.supervisor), which holds the
listening sockets of the processes replaced gracefully."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time

import click

from rosetta.core.django_setup import setup_django
from rosetta.core.paths import run_dir
from rosetta.processes.checks import check_id_region, check_public_setup
from rosetta.processes.table import PROCESSES, Process

PORT_FREED_WITHIN = 10.0  # seconds the children of a supervisor that died take to let go of its ports


@click.command("run")
@click.option("--host", default="localhost", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--gateway-workers", type=int, default=1, show_default=True)
@click.option(
    "--ssh-host",
    "ssh_hosts",
    multiple=True,
    help="Address the SSH front door listens on (repeatable; default: --host). Behind a TLS terminator the "
    "gateway stays on loopback while the door faces users.",
)
def command(host, port, gateway_workers, ssh_hosts):
    """Run every process of the platform together, each restarted if it dies.

    They are web + API, controller, gateway, SSH front door, builder, registry and pusher
    (rosetta.processes.table); SIGHUP replaces the gateway and the door without refusing a connection."""
    from rosetta.processes.supervisor import Supervisor

    _claim_home()  # its descriptor stays open, the claim held, until this process ends
    public_host = "localhost" if host in ("localhost", "0.0.0.0", "::") else host
    public = os.environ.setdefault("ROSETTA_PUBLIC_URL", f"http://{public_host}:{port}")
    setup_django()
    check_public_setup()
    check_id_region()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)  # an upgraded checkout just works
    from rosetta.core import metrics

    metrics.start_afresh()  # every process starts anew: the counts of the last run's are history
    processes = [process for process in PROCESSES if _runs_here(process)]
    wanted = {process.inherits for process in processes}
    held = {  # held here for every gateway and door to come: replacing one refuses no connection
        "http": _gateway_sockets(host, port, gateway_workers) if "http" in wanted else [],
        "ssh": _door_sockets(ssh_hosts or (host,)) if "ssh" in wanted else [],
    }
    fds = {name: [sock.fileno() for sock in sockets] for name, sockets in held.items()}
    options = {"gateway": ["--host", host, "--port", str(port), "--workers", str(gateway_workers)]}
    supervisor = Supervisor(**children(processes, fds, options))
    replaced = "the gateway and the SSH door" if "ssh-door" in supervisor.graceful else "the gateway"
    click.echo(f"Rosetta is starting at {public}  (Ctrl-C stops it, SIGHUP replaces {replaced})")
    if "ssh-door" in supervisor.commands:
        from rosetta.gateway.ssh_access import door_info

        info = door_info()
        click.echo(f"SSH front door on port {info.port}, host key {info.fingerprint}")
    sys.exit(supervisor.run())


def children(processes: list[Process], fds: dict[str, list[int]], options: dict[str, list[str]]) -> dict:
    """The supervisor's arguments for ``processes``: each one's command, `rosetta NAME` with its
    ``options``; the listening sockets it inherits (``fds`` by kind); which are replaced gracefully."""
    me = [sys.executable, "-m", "rosetta.cli.main"]
    commands, pass_fds = {}, {}
    for process in processes:
        commands[process.name] = [*me, process.name, *options.get(process.name, [])]
        if process.inherits:
            pass_fds[process.name] = fds[process.inherits]
            commands[process.name] += ["--listen-fds", ",".join(map(str, fds[process.inherits]))]
    graceful = frozenset(process.name for process in processes if process.graceful)
    return {"commands": commands, "pass_fds": pass_fds, "graceful": graceful}


def _runs_here(process: Process) -> bool:
    not_here = process.not_here()
    if not_here is not None and not_here.said:
        click.echo(f"rosetta: {not_here.reason}.", err=True)
    return not_here is None


def _claim_home() -> int:
    """One `rosetta run` per home: a second says which one runs, and stops."""
    from rosetta.core.paths import home
    from rosetta.processes.supervisor import AlreadyRunning, claim

    try:
        return claim(run_dir() / "supervisor.lock")
    except AlreadyRunning as running:
        raise click.ClickException(
            f"Rosetta is already running for {home()} (`rosetta run`, pid {running.pid}); "
            f"stop it first (kill {running.pid}), or set ROSETTA_HOME to run another platform."
        ) from None


def _gateway_sockets(host: str, port: int, workers: int) -> list[socket.socket]:
    from rosetta.gateway.proxy import listening_sockets

    try:
        groups = _listen_once_free(lambda: listening_sockets([(host, port)], workers))
    except OSError as error:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from None
    return [sock for group in groups for sock in group]


def _door_sockets(hosts: tuple[str, ...]) -> list[socket.socket]:
    """The SSH front door's listening sockets (its port is on: rosetta.processes.ssh_door.door_off)."""
    from rosetta.gateway.proxy import listening_sockets
    from rosetta.gateway.ssh_access import door_port, host_key

    port = door_port()
    host_key()  # made here, once, before any process may race for it
    try:
        return _listen_once_free(lambda: listening_sockets([(host, port) for host in hosts])[0])
    except OSError as error:
        raise click.ClickException(
            f"Cannot listen on {', '.join(hosts)} port {port} for the SSH front door: {error.strerror or error} "
            "(ROSETTA_SSH_PORT chooses another port; 'off' runs none)."
        ) from None


def _listen_once_free(listen):
    """Listening sockets, waiting a little for a port held by the children of a supervisor that
    died (they got SIGTERM with it: a gateway lets go of its sockets as it starts to drain)."""
    deadline = time.monotonic() + PORT_FREED_WITHIN
    while True:
        try:
            return listen()
        except OSError as error:
            if error.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
        time.sleep(0.2)
