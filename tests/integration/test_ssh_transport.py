"""The SSH transport's connection on the test bed's real sshd: closed once nothing has used it
for a while (web and gateway processes reach resources for many users), never while a command
or a stream is open, and opened again by the next use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rosetta.computing.transports import ssh
from rosetta.computing.transports.ssh import SSHTransport
from tests.integration.test_remote import bed


@pytest.fixture
async def transport(monkeypatch):
    monkeypatch.setattr(ssh, "IDLE_CLOSE", 0.5)
    described = bed()
    host = next(host for host in described["hosts"] if host["name"] == "rstb-host")
    transport = SSHTransport(
        host["address"], host["ssh_port"], "rosetta", Path(described["ssh"]["private_key"]).read_text(),
        [key["public_key"] for key in host["host_keys"]], ".rosetta",
    )  # fmt: skip
    yield transport
    await transport.close()


async def test_an_unused_connection_is_closed_and_opened_again_on_the_next_use(transport):
    assert (await transport.run(["echo", "one"])).stdout == "one\n"
    first = await transport.connection()
    await asyncio.sleep(1.8)
    assert first.is_closed()  # nothing used it: closed
    assert (await transport.run(["echo", "two"])).stdout == "two\n"  # opened again, transparently
    assert not (await transport.connection()).is_closed()


async def test_a_connection_with_an_open_stream_stays_open(transport):
    lines = transport.stream(["sh", "-c", "echo start; sleep 2; echo end"])
    assert await anext(lines) == b"start\n"
    connection = await transport.connection()
    await asyncio.sleep(1.5)  # longer than the idle limit, with the stream still open
    assert not connection.is_closed()
    assert b"".join([chunk async for chunk in lines]) == b"end\n"
