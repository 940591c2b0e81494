"""Reading a task's output: live from its container, or the tail kept once it has ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async

from rosetta.computing.backends import backend_for
from rosetta.computing.contract import TaskRef
from rosetta.computing.errors import ComputingError
from rosetta.tasks.models import Task
from rosetta.tasks.phases import Phase
from rosetta.tasks.probe import PROBE_PATH

LIVE_PHASES = frozenset({Phase.STARTING, Phase.RUNNING, Phase.STOPPING})


WAITING_PHASES = frozenset({Phase.CREATED, Phase.QUEUED})
# Seconds between looks at a task that has no container yet: often at first (most start in
# seconds), then seldom (a job may wait in a batch queue for days, with someone following it).
WAIT_POLLS = (0.5, 0.5, 1.0, 1.0, 2.0, 5.0)
_PROBE_PATH_BYTES = PROBE_PATH.encode()
MAX_HELD_LINE = 64 * 1024


async def stream_logs(task: Task, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
    if follow and task.phase_enum in WAITING_PHASES:
        # Following a task that has no output yet means waiting for its output, not ending at once.
        looks = 0
        while task.phase_enum in WAITING_PHASES:
            await asyncio.sleep(WAIT_POLLS[min(looks, len(WAIT_POLLS) - 1)])
            looks += 1
            if not await sync_to_async(_refresh)(task):
                return  # deleted meanwhile
    if task.phase_enum in LIVE_PHASES:
        try:
            backend = await sync_to_async(backend_for)(task.resource, task.owner)
            chunks = backend.logs(TaskRef(task.id, task.backend_state), follow=follow, tail=tail)
            async for chunk in without_probe_lines(chunks):
                yield chunk
            return
        except ComputingError as error:
            yield f"[rosetta] cannot read the logs: {error}\n".encode()
            return
    await sync_to_async(task.refresh_from_db)(fields=["log_tail"])
    text = task.log_tail
    if tail is not None:
        text = "\n".join(text.splitlines()[-tail:]) + ("\n" if text else "")
    yield text.encode()


def _refresh(task: Task) -> bool:
    fresh = Task.objects.filter(pk=task.pk).values("phase", "backend_state").first()
    if fresh is None:
        return False
    task.phase, task.backend_state = fresh["phase"], fresh["backend_state"]
    return True


async def without_probe_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The output without the lines the interface logged about the platform's own probe. A
    line is judged once it is whole; one that grows past MAX_HELD_LINE unended (binary output)
    is passed on as it is, so that nothing is held without bound."""
    partial = b""
    async for chunk in chunks:
        whole, _, partial = (partial + chunk).rpartition(b"\n")
        if whole:
            yield strip_probe_lines(whole + b"\n")
        if len(partial) > MAX_HELD_LINE:
            yield partial
            partial = b""
    if partial:
        yield strip_probe_lines(partial)


def strip_probe_lines(output: bytes) -> bytes:
    """The output without the probe's lines, for output read in one piece."""
    if _PROBE_PATH_BYTES not in output:
        return output
    return b"\n".join(line for line in output.split(b"\n") if _PROBE_PATH_BYTES not in line)
