"""The readiness probe asks as the gateway will: with the task's secret."""

import asyncio

from rosetta.tasks.logs import MAX_HELD_LINE, strip_probe_lines, without_probe_lines
from rosetta.tasks.probe import PROBE_PATH, interface_answers


async def test_an_http_probe_presents_the_task_secret():
    heads = []

    async def answer(reader, writer):
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    async with server:
        assert await interface_answers(address, "http", secret="the-task-secret")
        assert await interface_answers(address, "http")
    assert b"\r\nAuthorization: Bearer the-task-secret\r\n" in heads[0]
    assert b"Authorization" not in heads[1]
    assert heads[0].startswith(f"GET {PROBE_PATH} HTTP/1.1\r\n".encode())


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_logs_lose_the_probes_lines_and_nothing_else_however_they_are_cut():
    output = [
        b"[I 10:00:01 ServerApp] Jupyter Server is running\n[W 10:00:02 Server",
        f"App] 404 GET {PROBE_PATH} (@10.123.0.1) 0.6ms\n".encode(),
        b"[I 10:00:03 ServerApp] 200 GET /lab (@10.123.0.1)\nno newline at the end",
    ]
    shown = b"".join([chunk async for chunk in without_probe_lines(_chunks(*output))])
    assert shown == (
        b"[I 10:00:01 ServerApp] Jupyter Server is running\n"
        b"[I 10:00:03 ServerApp] 200 GET /lab (@10.123.0.1)\nno newline at the end"
    )
    assert strip_probe_lines(b"".join(output)) == shown


async def test_a_line_that_never_ends_is_passed_on_rather_than_held():
    endless = b"x" * (MAX_HELD_LINE + 1)
    shown = [chunk async for chunk in without_probe_lines(_chunks(endless, b"more"))]
    assert shown[0] == endless and b"".join(shown) == endless + b"more"
