"""The tunnels to ports on other machines (OpenSSH's forwarding, transports/openssh.py), against
the test bed's real sshd: a forward is a private unix socket that reaches the port as the host
sees it, made once and reused, every connection through it carried by the one SSH connection
of the master — on which sshd sends without waiting for ACKs (see openssh.py)."""

from __future__ import annotations

import asyncio
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import asyncssh

from rosetta.computing.transports.openssh import OpenSSHForwarder
from tests.integration.test_remote import bed


def _master_connections(pid: int, host: str, port: int) -> list[str]:
    """The local ends ("address:port") of the TCP connections process ``pid`` holds to host:port."""
    listed = subprocess.run(["ss", "-tnpH", "state", "established", "dst", f"{host}:{port}"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [line.split()[2] for line in listed.splitlines() if f"pid={pid}," in line]


def _tos_sshd_set(namespace: str, client: str) -> int:
    """The IP TOS of sshd's end of the connection from ``client``, read in the host's namespace."""
    listed = subprocess.run(["nsenter", f"--net=/run/netns/{namespace}", "ss", "-tnH", "--tos", "state", "established",
                             "dst", client], capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(re.search(r"tos:(0x[0-9a-f]+|0)\b", listed).group(1), 0)


async def _banner(path: str) -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_a_forward_is_private_reused_over_one_connection_that_sshd_sends_on_at_once():
    described = bed()
    host = next(h for h in described["hosts"] if h["name"] == "rstb-host")
    short = Path(tempfile.mkdtemp(prefix="rt-"))  # a unix socket's path must stay under 108 bytes
    forwarder = OpenSSHForwarder(
        host=host["address"],
        port=host["ssh_port"],
        username="rosetta",
        private_key=asyncssh.read_private_key(described["ssh"]["private_key"]),
        host_keys=[asyncssh.import_public_key(key["public_key"]) for key in host["host_keys"]],
        directory=short / "forwards",
    )
    try:
        # The host's own sshd, as the host sees it: its banner proves the forward goes through.
        path = await forwarder.reach("127.0.0.1", 22)
        assert stat.S_IMODE(Path(path).stat().st_mode) & 0o077 == 0
        assert stat.S_IMODE((short / "forwards").stat().st_mode) == 0o700
        banners = await asyncio.gather(*(_banner(path) for _ in range(3)))
        assert all(banner.startswith(b"SSH-2.0-") for banner in banners)
        assert await forwarder.reach("127.0.0.1", 22) == path  # made once
        assert not (short / "forwards" / "key").exists()  # the private key left the disk once the master was up

        # One SSH connection carries them all; sshd switched it to session mode, in which it turns
        # Nagle's algorithm off (TCP_NODELAY) and sets the IP TOS, the part that can be read here.
        # Without it every response waited for a delayed ACK.
        connections = _master_connections(forwarder._master.pid, host["address"], host["ssh_port"])
        assert len(connections) == 1, connections
        assert _tos_sshd_set(host["netns"], connections[0]) != 0
    finally:
        await forwarder.close()
        shutil.rmtree(short, ignore_errors=True)
