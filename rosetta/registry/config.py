"""Where the platform's registry listens, the address resources pull from, and its configuration.

Two kinds of ``docker-registry`` process share one storage directory (``ROSETTA_HOME/registry``):

- the public one (``rosetta registry``, supervised by ``rosetta run``) on
  ``ROSETTA_REGISTRY_LISTEN``: read-only, no authentication — anyone who reaches it may pull,
  no one may push;
- a private writer that pushes go through, started by whoever pushes for as long as it pushes
  (``rosetta.registry.push.Writer``): on a free loopback port, with a password made for that
  run only, so no other account of this machine can push either.

The configuration is written as JSON, which is YAML too (the registry reads YAML): no YAML
library needed.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from rosetta.core.paths import home, private_dir, read_or_create, run_dir

EXECUTABLE = "docker-registry"
ADDRESS_FILE = "registry.address"  # in the run directory: where the public registry listens now
UNSPECIFIED_HOSTS = ("0.0.0.0", "*", "")


def registry_home() -> Path:
    return private_dir(home() / "registry")


def storage_dir() -> Path:
    return private_dir(registry_home() / "storage")


def http_secret() -> str:
    """Signs upload state between requests (the registry makes up one per process otherwise)."""
    import secrets

    return read_or_create(registry_home() / "http_secret", lambda: secrets.token_urlsafe(32))


def registry_enabled() -> bool:
    return settings.REGISTRY_LISTEN.lower() not in ("off", "")


def parse_address(text: str, setting: str = "ROSETTA_REGISTRY_LISTEN") -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); refuses anything an image reference could not name."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535 or any(char in host for char in "[]:/@ "):
        raise ImproperlyConfigured(f"{setting}={text!r} is not HOST:PORT (e.g. 127.0.0.1:5000; no IPv6 literal).")
    return host.lower(), int(port)


def listen_address() -> tuple[str, int] | None:
    """(host, port) the public registry listens on, port 0 meaning one chosen at start; None when off."""
    return parse_address(settings.REGISTRY_LISTEN) if registry_enabled() else None


def address() -> str | None:
    """``host:port`` resources pull from, as image references name it; None while unknown
    (no registry, or one on a port chosen at start that has not started yet)."""
    listen = listen_address()
    if listen is None:
        return None
    if settings.REGISTRY_ADDRESS:
        host, port = parse_address(settings.REGISTRY_ADDRESS, "ROSETTA_REGISTRY_ADDRESS")
        if not port or host in UNSPECIFIED_HOSTS:
            raise ImproperlyConfigured("ROSETTA_REGISTRY_ADDRESS must name a host and a port resources reach.")
        return f"{host}:{port}"
    host, port = listen
    if host in UNSPECIFIED_HOSTS:
        return None  # listening on every address: which one resources reach is the operator's to say
    if port:
        return f"{host}:{port}"
    try:
        return (run_dir() / ADDRESS_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def choose_listen_address() -> tuple[str, int]:
    """Where the public registry listens this time, recorded in the run directory for the
    platform's other processes. A port chosen at start stays the same across restarts while it
    is free, so references already handed out (and forwards set up for them) stay valid."""
    listen = listen_address()
    if listen is None:
        raise ImproperlyConfigured("The platform's registry is off (ROSETTA_REGISTRY_LISTEN=off).")
    host, port = listen
    if host in UNSPECIFIED_HOSTS and not settings.REGISTRY_ADDRESS:
        raise ImproperlyConfigured(
            f"ROSETTA_REGISTRY_LISTEN={settings.REGISTRY_LISTEN} listens on every address: set "
            "ROSETTA_REGISTRY_ADDRESS to the HOST:PORT resources reach it at."
        )
    if port == 0:
        recorded = run_dir() / ADDRESS_FILE
        previous = recorded.read_text().strip() if recorded.exists() else ""
        previous_host, _, previous_port = previous.rpartition(":")
        if previous_host == host and previous_port.isdigit() and port_is_free(host, int(previous_port)):
            port = int(previous_port)
        else:
            port = free_port(host)
    path = run_dir() / ADDRESS_FILE
    temporary = path.with_name(f".{ADDRESS_FILE}.tmp")
    temporary.write_text(f"{host}:{port}\n")
    temporary.replace(path)
    return host, port


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def public_config(listen: str) -> dict:
    """The public registry: pulls only (``readonly``; pushes answer 405), nothing deleted,
    nothing purged (uploads in progress belong to the writer)."""
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}, "fields": {"service": "rosetta-registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir())},
            "delete": {"enabled": False},
            "maintenance": {"readonly": {"enabled": True}, "uploadpurging": {"enabled": False}},
        },
        "http": {"addr": listen, "secret": http_secret(), "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }


def writer_config(listen: str, htpasswd: Path) -> dict:
    """A private writer: every request needs the password of ``htpasswd``."""
    return {
        "version": 0.1,
        # Each client first asks without credentials, which the registry logs as a warning.
        "log": {"level": "error", "accesslog": {"disabled": True}, "fields": {"service": "rosetta-registry-writer"}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir())},
            "delete": {"enabled": False},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": listen, "secret": http_secret()},
        "auth": {"htpasswd": {"realm": "rosetta-registry-writer", "path": str(htpasswd)}},
    }


def write_config(path: Path, config: dict) -> Path:
    private_dir(path.parent)
    text = json.dumps(config, indent=2)
    write_private(path, f"# Written by Rosetta at every start (JSON is YAML too).\n{text}\n")
    return path


def write_private(path: Path, text: str) -> None:
    """Secrets (the HTTP secret, passwords) are the platform account's alone, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
