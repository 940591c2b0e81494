"""Does a task's interface answer? Asked the way the gateway will reach it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time

from rosetta.computing.contract import Address

PROBE_TIMEOUT = 2.0
# The probe asks for this path, which no interface serves (any HTTP answer will do): web servers
# name the path in their request logs, so the platform can keep the probe's lines out of the
# logs it shows (rosetta.tasks.logs).
PROBE_PATH = "/.rosetta/probe"


def _insecure_tls() -> ssl.SSLContext:
    # Task interfaces serve self-signed certificates; the probe only asks "is it up?".
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def interface_answers(address: Address, protocol: str, timeout: float = PROBE_TIMEOUT, secret: str = "") -> bool:
    """True once something speaking ``protocol`` answers at ``address``, within ``timeout``
    seconds in all (so that a probe never outlives the phase's deadline). An HTTP probe presents
    the task's ``secret`` as the gateway does (rosetta.tasks.secret).

    A bare TCP connect is not enough: podman's conmon holds published ports open before
    the program inside listens, so we wait for the protocol's first words.
    """
    deadline = time.monotonic() + timeout
    try:
        return await asyncio.wait_for(_ask(address, protocol, deadline, secret), timeout)
    except (OSError, TimeoutError, ssl.SSLError):
        return False


async def _ask(address: Address, protocol: str, deadline: float, secret: str) -> bool:
    tls = _insecure_tls() if protocol == "https" else None
    if isinstance(address, str):
        reader, writer = await asyncio.open_unix_connection(address, ssl=tls, server_hostname="" if tls else None)
    else:
        reader, writer = await asyncio.open_connection(*address, ssl=tls)
    try:
        if protocol in ("http", "https"):
            authorization = f"Authorization: Bearer {secret}\r\n" if secret else ""
            request = (
                f"GET {PROBE_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nUser-Agent: rosetta-probe\r\n"
                f"{authorization}\r\n"
            )
            writer.write(request.encode())
            await writer.drain()
            return await reader.read(5) == b"HTTP/"
        if protocol == "ssh":
            # Said as a client would, so sshd logs one closed connection, not a failed exchange.
            writer.write(b"SSH-2.0-RosettaProbe\r\n")
            return (await reader.readline()).startswith(b"SSH-")
        # Any other protocol: the connection must at least not be dropped at once.
        with contextlib.suppress(TimeoutError):
            return bool(await asyncio.wait_for(reader.read(1), min(0.2, max(0.0, deadline - time.monotonic()))))
        return True
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
