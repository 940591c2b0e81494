"""The readiness probe asks as the gateway will: with the task's secret."""

import asyncio

from rosetta.tasks.probe import interface_answers


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
