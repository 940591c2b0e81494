"""Request bodies that reach a view as they arrive, and files and zip archives sent as they
are read: the platform never holds a whole file in memory or copies it to a temporary place.

Django's ASGI handler reads every request body to its end (into a temporary file) before the
view runs. For uploads (``PUT`` of a storage's content) the handler here leaves the body to
the view instead, which reads it chunk by chunk from ``request.scope[BODY]`` while the
client sends it; uvicorn stops reading the socket while the view is busy, so the client is
slowed down rather than buffered.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator

from django.core.handlers.asgi import ASGIHandler
from django.http.request import RawPostDataException

from rosetta.core import metrics

BODY = "rosetta.body"
STREAMED = re.compile(r"^/api/storages/[^/]+/content$")


def streams_body(method: str, path: str) -> bool:
    return method == "PUT" and STREAMED.match(path) is not None


class RequestBody:
    """The ASGI receive channel of one request, read by the view as an async iterator."""

    def __init__(self, receive) -> None:
        self._receive = receive
        self.done = asyncio.Event()
        self.disconnected = False
        self.received = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self.done.is_set():
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.done.set()
                raise ConnectionAbortedError("The client went away during the upload.")
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                self.done.set()
            if chunk:
                self.received += len(chunk)
                metrics.STORAGE_BYTES.labels("upload").inc(len(chunk))
                yield chunk

    async def __call__(self):
        """What Django's handler calls to learn of a disconnect once the body is read."""
        await self.done.wait()
        if self.disconnected:
            return {"type": "http.disconnect"}
        return await self._receive()


BODY_READ_AHEAD = 1024 * 1024  # bytes of a request body the server reads before the view takes them


def larger_body_reads() -> None:
    """Let uvicorn read up to BODY_READ_AHEAD of a request body ahead of the view, not 64 KiB:
    an upload then costs a sixteenth of the event-loop turns (the memory bound stays fixed)."""
    from uvicorn.protocols.http import h11_impl, httptools_impl

    httptools_impl.HIGH_WATER_LIMIT = h11_impl.HIGH_WATER_LIMIT = BODY_READ_AHEAD


class Handler(ASGIHandler):
    chunk_size = 1024 * 1024  # bytes per message of a streamed response (Django's default: 64 KiB)

    async def handle(self, scope, receive, send):
        if scope["type"] == "http" and streams_body(scope["method"], scope["path"]):
            body = RequestBody(receive)
            scope = {**scope, BODY: body}
            receive = body
        await super().handle(scope, receive, send)

    async def read_body(self, receive):
        if isinstance(receive, RequestBody):
            return tempfile.SpooledTemporaryFile(max_size=0)  # empty: the view reads the body
        return await super().read_body(receive)


def body_of(request) -> RequestBody:
    body = getattr(request, "scope", {}).get(BODY)
    if body is None:
        raise RawPostDataException("This request's body was not kept for streaming.")
    return body


async def in_thread(produce: Iterator[bytes], depth: int = 4) -> AsyncIterator[bytes]:
    """Run a blocking generator in a thread of its own, ``depth`` chunks ahead at most."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(depth)
    stop = threading.Event()
    end = object()

    def run() -> None:
        try:
            for chunk in produce:
                if stop.is_set():
                    return
                asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            item = end
        except BaseException as error:  # handed to the consumer
            item = error
        if not stop.is_set():
            asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    thread = threading.Thread(target=run, daemon=True, name="rosetta-stream")
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not queue.empty():
            queue.get_nowait()  # frees a producer waiting to put


async def counted_download(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` as they are sent, counted for operators (rosetta.core.metrics)."""
    async for chunk in chunks:
        metrics.STORAGE_BYTES.labels("download").inc(len(chunk))
        yield chunk


def from_async(chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """An async iterator read from a thread (the zip writer's), one chunk at a time."""
    iterator = chunks.__aiter__()
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(iterator.__anext__(), loop).result()
        except StopAsyncIteration:
            return
