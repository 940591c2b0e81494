"""`rosetta web`: the web UI and REST API (Django under uvicorn), normally behind the gateway."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from rosetta.core.django_setup import setup_django
from rosetta.core.paths import run_dir
from rosetta.processes.checks import check_id_region, check_public_setup


def web_socket_path() -> Path:
    return run_dir() / "web.sock"


@click.command("web")
@click.option(
    "--socket", "socket_path", type=click.Path(), help="Unix socket to listen on (default: the run directory's)."
)
@click.option("--port", type=int, help="Listen on 127.0.0.1:PORT instead of a unix socket.")
def command(socket_path, port):
    """Serve the web UI and REST API (normally behind the gateway)."""
    import uvicorn

    setup_django()
    check_public_setup()
    check_id_region()
    if port:
        # Any local process can connect to a port and claim any address in X-Forwarded-For.
        options = {"port": port, "host": "127.0.0.1", "proxy_headers": False}
    else:
        # Only the platform's account can connect to the socket: what comes through it is the
        # gateway, whose X-Forwarded-For names the client (login limits count by it).
        listener = _private_unix_socket(Path(socket_path) if socket_path else web_socket_path())
        options = {"fd": listener.fileno(), "proxy_headers": True, "forwarded_allow_ips": "*"}
    from rosetta.storage.streaming import larger_body_reads
    from rosetta.storage.sweep import sweep_now_and_then

    larger_body_reads()
    sweep_now_and_then()  # what uploads cut short by a dead web process left behind
    uvicorn.run("rosetta.asgi:application", log_level="warning", lifespan="off", **options)


def _private_unix_socket(path: Path) -> socket.socket:
    """A listening socket at ``path`` that only this account can connect to. Bound here, not by
    uvicorn, which would make it connectable by every account (mode 0666)."""
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    path.chmod(0o600)
    return listener
