"""Where the SSH front door is, the key it proves itself with, and the commands that reach a
task through it (shown on the task page, in the API and by `rosetta task show`).

The door (rosetta.gateway.ssh_door) is a jump host: ``ssh -J ada@door:2222 rosetta@t1234``
authenticates ada at the door with a key she registered, then end to end with the task's
own sshd. Its host key is made once and kept in ``ROSETTA_HOME`` (0600), so users can pin it.
"""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncssh
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from rosetta.core.paths import home, read_or_create

TASK_LOGIN = "rosetta"  # the account of the built-in ssh image (images/README.md)
HOST_KEY_FILE = "ssh_host_ed25519_key"


def door_port() -> int | None:
    """The port the door listens on, or None when there is no door (ROSETTA_SSH_PORT=off)."""
    value = settings.SSH_PORT
    if value in ("", "off"):
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ImproperlyConfigured(f"ROSETTA_SSH_PORT must be a port number (1-65535) or 'off', not {value!r}.")
    return int(value)


def door_address() -> tuple[str, int] | None:
    """Where users connect to the door: ROSETTA_SSH_ADDRESS ("HOST", "HOST:PORT", "[V6]:PORT"),
    else the public URL's host on the door's port."""
    port = door_port()
    if port is None:
        return None
    address = settings.SSH_ADDRESS
    if not address:
        return urlsplit(settings.PUBLIC_URL).hostname or "localhost", port
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else port
    host, sep, public_port = address.rpartition(":")
    if sep and public_port.isdigit() and ":" not in host:
        return host, int(public_port)
    return address, port


def host_port(host: str, port: int) -> str:
    """``host:port`` as OpenSSH's -J and ProxyJump read it (22 left out)."""
    host = f"[{host}]" if ":" in host else host
    return host if port == 22 else f"{host}:{port}"


@functools.cache
def host_key() -> asyncssh.SSHKey:
    """The door's host key, made the first time anyone asks (several processes may: the file
    appears whole, once). Doors on several machines behind one address must present the same
    key, or users' ssh warns of a changed host key: ROSETTA_SSH_HOST_KEY names a file the site
    gives them all (read, never made)."""
    if settings.SSH_HOST_KEY:
        return asyncssh.read_private_key(settings.SSH_HOST_KEY)
    path = home() / HOST_KEY_FILE

    def generate() -> str:
        return asyncssh.generate_private_key("ssh-ed25519", comment="rosetta-ssh-door").export_private_key().decode()

    return asyncssh.import_private_key(read_or_create(path, generate))


@dataclass(frozen=True)
class DoorInfo:
    host: str
    port: int
    host_key: str  # the public host key, one OpenSSH line
    fingerprint: str  # SHA256:..., as ssh shows it on first connection
    known_hosts: str  # the line for ~/.ssh/known_hosts that pins it


def door_info() -> DoorInfo | None:
    address = door_address()
    if address is None:
        return None
    public = host_key().convert_to_public()
    line = public.export_public_key("openssh").decode().strip()
    algorithm, data = line.split()[:2]
    name = address[0] if address[1] == 22 else f"[{address[0]}]:{address[1]}"
    return DoorInfo(
        host=address[0],
        port=address[1],
        host_key=f"{algorithm} {data}",
        fingerprint=public.get_fingerprint("sha256"),
        known_hosts=f"{name} {algorithm} {data}",
    )


@dataclass(frozen=True)
class SSHAccess:
    command: str  # ssh -J ada@host:port rosetta@t1234
    proxy_jump: str  # ada@host:port: for -J, or ProxyJump= with scp, sftp, rsync -e ...
    destination: str  # rosetta@t1234
    scp: str
    sftp: str


def ssh_access(task) -> SSHAccess | None:
    """How to reach ``task`` with OpenSSH through the door; None for tasks without an SSH
    interface, or when there is no door."""
    if task.software.interface_protocol != "ssh":
        return None
    address = door_address()
    if address is None:
        return None
    jump = f"{task.owner.get_username()}@{host_port(*address)}"
    destination = f"{TASK_LOGIN}@{task.id}"
    return SSHAccess(
        command=shlex.join(["ssh", "-J", jump, destination]),
        proxy_jump=jump,
        destination=destination,
        scp=shlex.join(["scp", "-o", f"ProxyJump={jump}", "FILE", f"{destination}:"]),
        sftp=shlex.join(["sftp", "-o", f"ProxyJump={jump}", destination]),
    )


def ssh_config(username: str) -> str | None:
    """A ~/.ssh/config snippet: then ``ssh t1234.rosetta``, ``scp f t1234.rosetta:`` and
    ``sftp t1234.rosetta`` go through the door (it reads the task id before the first dot)."""
    address = door_address()
    if address is None:
        return None
    return (
        "Host rosetta-door\n"
        f"    HostName {address[0]}\n"
        f"    Port {address[1]}\n"
        f"    User {username}\n"
        "Host *.rosetta\n"
        "    ProxyJump rosetta-door\n"
        f"    User {TASK_LOGIN}\n"
    )
