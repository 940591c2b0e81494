"""The tunnels to ports on other machines (OpenSSH's forwarding, transports/openssh.py), against
the test bed's real sshd: a forward is a private unix socket that reaches the port as the host
sees it, made once and reused, every connection through it carried by the one SSH connection
of the master — on which sshd sends without waiting for ACKs (see openssh.py); many first
connections at once each reach their own target; the forwards kept are bounded; the master
ends with the process that started it."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import pytest

from rosetta.computing.transports.openssh import OpenSSHForwarder
from tests.checks import alive
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


def _forwarder(directory: Path, **options) -> OpenSSHForwarder:
    """A forwarder to the test bed's podman host, as its service account."""
    described = bed()
    host = next(h for h in described["hosts"] if h["name"] == "rstb-host")
    return OpenSSHForwarder(
        host=host["address"],
        port=host["ssh_port"],
        username="rosetta",
        private_key=asyncssh.read_private_key(described["ssh"]["private_key"]),
        host_keys=[asyncssh.import_public_key(key["public_key"]) for key in host["host_keys"]],
        directory=directory,
        **options,
    )


async def test_a_forward_is_private_reused_over_one_connection_that_sshd_sends_on_at_once():
    host = next(h for h in bed()["hosts"] if h["name"] == "rstb-host")
    short = Path(tempfile.mkdtemp(prefix="rt-"))  # a unix socket's path must stay under 108 bytes
    forwarder = _forwarder(short / "forwards")
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


@pytest.fixture
def servers():
    """Eight web servers on the podman host's loopback, run by its service account, each serving
    a page of its own: {port: page}."""
    service = next(a for a in bed()["accounts"] if a["name"] == "rosetta")
    running: dict[int, tuple[subprocess.Popen, bytes]] = {}
    pages = Path(tempfile.mkdtemp(prefix="rt-pages-"))
    pages.chmod(0o755)  # the service account reads them
    while len(running) < 8:
        port = random.randrange(20000, 40000)  # another test's task may hold one: then try another
        page = f"server on port {port}\n".encode()
        root = pages / str(port)
        root.mkdir(mode=0o755)
        (root / "index.html").write_bytes(page)
        (root / "index.html").chmod(0o644)
        server = subprocess.Popen([
            "nsenter", "--net=/run/netns/rstb-host", "setpriv", f"--reuid={service['uid']}",
            f"--regid={service['uid']}", "--clear-groups", "--",
            "busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(root),
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.2)
        if server.poll() is None:
            running[port] = (server, page)
    yield {port: page for port, (_, page) in running.items()}
    for server, _ in running.values():
        server.terminate()
        server.wait(timeout=10)
    shutil.rmtree(pages, ignore_errors=True)


async def _get(path: str) -> bytes:
    """The body of GET / through the unix socket ``path``."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return response.partition(b"\r\n\r\n")[2]


async def test_many_first_connections_at_once_each_reach_their_own_target(servers):
    """The gateway opening several tasks of one resource at the same moment: every caller waits
    for the one master start, gets a socket of its own target's, and callers of one target share
    one forward."""
    short = Path(tempfile.mkdtemp(prefix="rt-"))
    forwarder = _forwarder(short / "forwards")
    try:

        async def first_request(port: int) -> tuple[str, bytes]:
            path = await forwarder.reach("127.0.0.1", port)
            return path, await _get(path)

        ports = list(servers) * 2  # two callers per target, all at once
        answers = await asyncio.gather(*(first_request(port) for port in ports))
        assert [body for _, body in answers] == [servers[port] for port in ports]
        paths = {port: path for port, (path, _) in zip(ports, answers, strict=True)}
        assert all(answers[i][0] == paths[port] for i, port in enumerate(ports))  # one forward per target
        assert len(set(paths.values())) == len(servers)
        assert len(list((short / "forwards").glob("*.sock"))) == len(servers)
        assert len(_master_connections(forwarder._master.pid, *_ssh_address())) == 1  # one master started

        # Started again after the master died: the same targets, reached anew, still their own.
        forwarder._master.kill()
        await forwarder._master.wait()
        again = await asyncio.gather(*(first_request(port) for port in servers))
        assert [body for _, body in again] == list(servers.values())
        assert not {path for path, _ in again} & set(paths.values())  # a socket's name is never used twice
    finally:
        await forwarder.close()
        shutil.rmtree(short, ignore_errors=True)


async def test_the_forwards_kept_are_bounded(servers):
    """Beyond its bound the least recently used forward is cancelled (its socket goes); reached
    again, it is forwarded anew."""
    short = Path(tempfile.mkdtemp(prefix="rt-"))
    forwarder = _forwarder(short / "forwards", max_forwards=3)
    first, second, third, fourth = list(servers)[:4]
    try:
        kept = [await forwarder.reach("127.0.0.1", port) for port in (first, second, third)]
        assert await forwarder.reach("127.0.0.1", first) == kept[0]  # used again: now the most recent
        await forwarder.reach("127.0.0.1", fourth)  # over the bound: the second goes
        deadline = time.monotonic() + 10
        while Path(kept[1]).exists():
            assert time.monotonic() < deadline, "the least recently used forward was not cancelled"
            await asyncio.sleep(0.05)
        assert len(list((short / "forwards").glob("*.sock"))) == 3
        assert await _get(kept[0]) == servers[first] and await _get(kept[2]) == servers[third]
        anew = await forwarder.reach("127.0.0.1", second)
        assert anew != kept[1] and await _get(anew) == servers[second]
    finally:
        await forwarder.close()
        shutil.rmtree(short, ignore_errors=True)


MASTER_OWNER = """
import asyncio, sys
from pathlib import Path
from tests.integration.test_openssh_forwarder import _forwarder

async def main():
    forwarder = _forwarder(Path(sys.argv[1]))
    await forwarder.reach("127.0.0.1", 22)
    print(forwarder._master.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_the_master_ends_with_the_process_that_started_it():
    """Killed outright (no chance to tidy up), the process that started a master leaves no SSH
    connection behind."""
    short = Path(tempfile.mkdtemp(prefix="rt-"))
    owner = subprocess.Popen([sys.executable, "-c", MASTER_OWNER, str(short / "forwards")],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        master = int(owner.stdout.readline())
        assert Path(f"/proc/{master}/cmdline").read_bytes().startswith(b"ssh\0")
        owner.kill()
        owner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(master):
            assert time.monotonic() < deadline, "the master outlived the process that started it"
            time.sleep(0.05)
    finally:
        owner.kill()
        owner.wait(timeout=10)
        shutil.rmtree(short, ignore_errors=True)


def _ssh_address() -> tuple[str, int]:
    host = next(h for h in bed()["hosts"] if h["name"] == "rstb-host")
    return host["address"], host["ssh_port"]
