"""`rosetta gateway`: the front door for the platform and every task's origin (rosetta.gateway)."""

from __future__ import annotations

import sys

import click

from rosetta.core.django_setup import configure_logging, setup_django
from rosetta.core.paths import run_dir
from rosetta.processes.web import web_socket_path


@click.command("gateway")
@click.option(
    "--host", default="localhost", show_default=True, help="Address to listen on ('localhost' = 127.0.0.1 and ::1)."
)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Processes sharing the port (SO_REUSEPORT).")
@click.option("--platform", "platform_upstream", help="Where the web UI listens: a unix socket path or HOST:PORT.")
@click.option("--listen-fds", help="Listening sockets inherited from `rosetta run` (descriptors, grouped per worker).")
def command(host, port, workers, platform_upstream, listen_fds):
    """Run the gateway: the front door for the platform and every task's origin.

    SIGTERM: stop accepting, let open connections (WebSockets) finish, then exit. SIGINT: exit now."""
    setup_django()
    from django.conf import settings

    from rosetta.core.database import fresh_connection
    from rosetta.core.notify import shared_database
    from rosetta.gateway.access import access_key
    from rosetta.gateway.proxy import GatewayConfig, inherited_sockets, run_gateway
    from rosetta.gateway.snapshot import load_route_table
    from rosetta.processes.supervisor import report_ready

    config = GatewayConfig(
        listen=[(host, port)],
        tasks_domain=settings.TASKS_DOMAIN,
        platform_upstream=parse_upstream(platform_upstream) if platform_upstream else str(web_socket_path()),
        public_url=settings.PUBLIC_URL,
        key=access_key(settings.SECRET_KEY),
        used_tokens=run_dir() / "used-access-tokens.sqlite3",
        used_tokens_in_database=shared_database(),  # PostgreSQL: gateways may run on several machines
        workers=workers,
        trusted_proxies=tuple(settings.TRUSTED_PROXIES),
    )
    sockets = inherited_sockets([int(fd) for fd in listen_fds.split(",")], workers) if listen_fds else None
    configure_logging()
    try:
        sys.exit(run_gateway(config, fresh_connection(load_route_table), sockets=sockets, ready=report_ready))
    except OSError as error:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from None


def parse_upstream(text: str) -> tuple[str, int] | str:
    host, sep, port = text.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else text
