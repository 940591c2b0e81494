"""The SSH front door under abuse, in this process with small limits: connections over the
per-client limit are dropped at once (an IPv6 client counts by its /64), one that never logs in
is closed at its deadline, a client offering key after key is cut off, and a connection whose
key or account is withdrawn is ended while it is open."""

import asyncio
import contextlib
import time

import asyncssh
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from rosetta.accounts.models import SSHKey
from rosetta.accounts.services import add_ssh_key
from rosetta.gateway.proxy import listening_sockets
from rosetta.gateway.ssh_door import Door, DoorConfig
from tests.netns import connected_from, ipv6_host


async def banner_or_close(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    """What the door sends first: its SSH version line, or nothing before it hangs up."""
    with contextlib.suppress(ConnectionError):
        return await asyncio.wait_for(reader.readline(), timeout)
    return b""


@contextlib.asynccontextmanager
async def running_door(sockets=None, **limits):
    """A door on a free loopback port (or on ``sockets``); yields (door, port)."""
    config = DoorConfig(host_key=asyncssh.generate_private_key("ssh-ed25519"), address="localhost:2222", **limits)
    door = Door(config)
    sockets = sockets or listening_sockets([("127.0.0.1", 0)])[0]
    await door.start(sockets)
    try:
        yield door, sockets[0].getsockname()[1]
    finally:
        await door.drain(0)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


async def test_the_door_drops_connections_over_the_limit_and_slow_logins():
    async with running_door(login_timeout=1.0, max_connections_per_client=2) as (door, port):
        first, second = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for reader, _ in (first, second):
            assert (await banner_or_close(reader)).startswith(b"SSH-2.0-")
        third_reader, third_writer = await asyncio.open_connection("127.0.0.1", port)
        # Past the limit: the door says why (an SSH disconnect message) and hangs up.
        assert b"Too many connections" in await asyncio.wait_for(third_reader.read(), 5)
        third_writer.close()

        # The first two never log in: both are closed once the login deadline passes.
        began = time.monotonic()
        for reader, _ in (first, second):
            await asyncio.wait_for(reader.read(), 5)  # until EOF
        assert 0.5 < time.monotonic() - began < 4
        for _, writer in (first, second):
            writer.close()
        await asyncio.sleep(0.1)
        assert not door.connections and not door.per_client  # every slot given back


LAN, OTHER_LAN = "fd52:6f73:6574:7461", "fd52:6f73:6574:7462"  # two /64s, one machine's (a namespace)


async def test_an_ipv6_client_counts_by_its_64_not_by_each_address():
    addresses = [f"{LAN}::1/64", f"{LAN}::2/64", f"{LAN}:1:2:3:4/64", f"{OTHER_LAN}::1/64"]
    with ipv6_host(*addresses) as inside:
        sockets = inside(listening_sockets, [(f"{LAN}::1", 0)])[0]
        async with running_door(sockets, max_connections_per_client=2) as (_, port):
            held = []
            for source in (f"{LAN}::2", f"{LAN}::1"):  # two addresses of one /64: its two connections
                reader, writer = await asyncio.open_connection(sock=inside(connected_from, source, f"{LAN}::1", port))
                assert (await banner_or_close(reader)).startswith(b"SSH-2.0-")
                held.append(writer)
            # A third address of the same /64 is the same client: over its limit.
            reader, writer = await asyncio.open_connection(
                sock=inside(connected_from, f"{LAN}:1:2:3:4", f"{LAN}::1", port)
            )
            assert b"Too many connections" in await asyncio.wait_for(reader.read(), 5)
            writer.close()
            # Another /64 is another client.
            reader, writer = await asyncio.open_connection(
                sock=inside(connected_from, f"{OTHER_LAN}::1", f"{LAN}::1", port)
            )
            assert (await banner_or_close(reader)).startswith(b"SSH-2.0-")
            for each in (*held, writer):
                each.close()


def user_with_key(name: str, key: asyncssh.SSHKey):
    user = get_user_model().objects.create_user(name)
    add_ssh_key(user, key.export_public_key().decode())
    return user


def login(port: int, username: str, keys: list) -> asyncssh.SSHClientConnection:
    return asyncssh.connect(
        "127.0.0.1", port, username=username, client_keys=keys, known_hosts=None, agent_path=None,
        preferred_auth="publickey", connect_timeout=10,
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
async def test_a_connection_may_offer_six_keys_and_no_more():
    key = asyncssh.generate_private_key("ssh-ed25519")
    strangers = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(9)]
    await sync_to_async(user_with_key)("ada", key)
    async with running_door() as (door, port):
        # Five keys that are not hers, then hers: in, as with OpenSSH's MaxAuthTries 6.
        async with await login(port, "ada", [*strangers[:5], key]) as connection:
            assert connection.get_extra_info("username") == "ada"
        # Nine that are not, then hers: the connection ends after the sixth.
        began = time.monotonic()
        with pytest.raises(asyncssh.DisconnectError, match="Too many authentication attempts"):
            await login(port, "ada", [*strangers, key])
        assert time.monotonic() - began < 5


@pytest.mark.django_db(transaction=True)
async def test_an_open_connection_ends_when_its_key_or_account_is_withdrawn():
    keys = {name: asyncssh.generate_private_key("ssh-ed25519") for name in ("ada", "bob")}
    ada = await sync_to_async(user_with_key)("ada", keys["ada"])
    bob = await sync_to_async(user_with_key)("bob", keys["bob"])
    async with running_door(recheck_interval=0.5) as (door, port):
        connections = {name: await login(port, name, [key]) for name, key in keys.items()}
        await asyncio.sleep(1)
        assert len(door.connections) == 2  # both stay while nothing changes

        await sync_to_async(SSHKey.objects.filter(user=ada).delete)()
        began = time.monotonic()
        await asyncio.wait_for(connections["ada"].wait_closed(), 5)
        print(f"ended {time.monotonic() - began:.1f} s after the key was removed")

        bob.is_active = False
        await sync_to_async(bob.save)()
        began = time.monotonic()
        await asyncio.wait_for(connections["bob"].wait_closed(), 5)
        print(f"ended {time.monotonic() - began:.1f} s after the account was deactivated")
        await asyncio.sleep(0.1)
        assert not door.connections
