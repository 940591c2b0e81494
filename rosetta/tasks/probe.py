"""Does a task's interface answer? Asked the way the gateway will reach it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

PROBE_TIMEOUT = 2.0


def _insecure_tls() -> ssl.SSLContext:
    # Task interfaces serve self-signed certificates; the probe only asks "is it up?".
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def interface_answers(host: str, port: int, protocol: str) -> bool:
    """True once something speaking ``protocol`` answers at host:port.

    A bare TCP connect is not enough: podman's conmon holds published ports open before
    the program inside listens, so we wait for the protocol's first words.
    """
    tls = _insecure_tls() if protocol == "https" else None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), PROBE_TIMEOUT)
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    try:
        if protocol in ("http", "https"):
            request = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: rosetta-probe\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            return (await asyncio.wait_for(reader.read(5), PROBE_TIMEOUT)) == b"HTTP/"
        if protocol == "ssh":
            return (await asyncio.wait_for(reader.read(4), PROBE_TIMEOUT)) == b"SSH-"
        # Any other protocol: the connection must at least not be dropped at once.
        with contextlib.suppress(TimeoutError):
            return bool(await asyncio.wait_for(reader.read(1), 0.2))
        return True
    except (OSError, TimeoutError, ssl.SSLError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
