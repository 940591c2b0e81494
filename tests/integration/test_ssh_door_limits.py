"""The SSH front door under abuse, in this process with small limits: connections over the
per-client limit are dropped at once, and one that never logs in is closed at its deadline."""

import asyncio
import contextlib
import time

import asyncssh

from rosetta.gateway.proxy import listening_sockets
from rosetta.gateway.ssh_door import Door, DoorConfig


async def banner_or_close(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    """What the door sends first: its SSH version line, or nothing before it hangs up."""
    with contextlib.suppress(ConnectionError):
        return await asyncio.wait_for(reader.readline(), timeout)
    return b""


async def test_the_door_drops_connections_over_the_limit_and_slow_logins():
    config = DoorConfig(
        host_key=asyncssh.generate_private_key("ssh-ed25519"),
        address="localhost:2222",
        login_timeout=1.0,
        max_connections_per_client=2,
    )
    door = Door(config)
    sockets = listening_sockets([("127.0.0.1", 0)])[0]
    port = sockets[0].getsockname()[1]
    await door.start(sockets)
    try:
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
    finally:
        await door.drain(0)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
