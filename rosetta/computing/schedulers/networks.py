"""Task networks removed in batches, off the path of a task's stop.

A task's network is no use once its container is gone: no route leads into it any more (the
bridge goes with the last container), only the engine's record of it is left. Removing that
record costs as much as the rest of the stop together when many stops run at once (`podman
network rm` took ~1.2 s each at 8 at a time during a burst, and more with more networks), while
one command removing 20 networks took 0.07 s. So a stop is done when its container is gone and
its output kept, and the network is handed to this collector: one command at a time removes
every network handed over meanwhile.

Safety: only networks whose container is already removed are handed over, and never with
``--force`` (which would remove containers): a network still in use is left alone. A network
the collector never got to (the platform stopped or was killed meanwhile, a removal failed)
still carries the task's labels: the scheduler's ``leftovers`` lists it and the controller ends
that task's work again, which hands the network over again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from rosetta.computing.engines.base import Engine
from rosetta.computing.errors import ComputingError
from rosetta.computing.transports.base import Transport

log = logging.getLogger(__name__)

MAX_BATCH = 100  # networks in one command (its argv stays short)
REMOVE_TIMEOUT = 120.0
FINISH_ON_CLOSE = 30.0  # seconds a closing scheduler gives the collector to finish


class NetworkCollector:
    def __init__(self, transport: Transport, engine: Engine) -> None:
        self.transport = transport
        self.engine = engine
        self.pending: set[str] = set()  # task ids whose networks are to be removed
        self.removing: set[str] = set()  # those the command in flight removes
        self._work: asyncio.Task | None = None
        self._batch_done: asyncio.Event | None = None

    def collect(self, task_id: str) -> None:
        """Remove the task's network soon (its container is gone)."""
        self.pending.add(task_id)
        if not self._working():
            self._work = asyncio.create_task(self._remove_all())

    def _working(self) -> bool:
        """Whether the collector runs in this loop (one of a loop that is gone never will)."""
        work = self._work
        if work is not None and not work.done() and work.get_loop() is asyncio.get_running_loop():
            return True
        self.removing, self._batch_done = set(), None
        return False

    async def claim(self, task_id: str) -> None:
        """The task's network is wanted again (a new launch): not removed from now on. Waits for
        a command in flight that removes it, so that the launch then creates it afresh."""
        self.pending.discard(task_id)
        while self._working() and task_id in self.removing and self._batch_done is not None:
            await self._batch_done.wait()

    def owed(self) -> set[str]:
        """The task ids whose networks are on their way out."""
        return self.pending | self.removing

    async def _remove_all(self) -> None:
        while self.pending:
            batch = sorted(self.pending)[:MAX_BATCH]
            self.pending.difference_update(batch)
            self.removing, self._batch_done = set(batch), asyncio.Event()
            try:
                await self._remove(batch)
            except ComputingError as error:
                log.warning("could not remove %d task networks (left for later): %s", len(batch), error)
            except Exception:  # the collector goes on; what it could not remove is found again
                log.exception("removing %d task networks failed", len(batch))
            finally:
                self.removing = set()
                self._batch_done.set()

    async def _remove(self, batch: list[str]) -> None:
        result = await self.transport.run(self.engine.networks_remove_argv(batch), timeout=REMOVE_TIMEOUT)
        if result.ok:
            return
        # One of them could not go (missing already, or in use): the others one by one, to
        # tell which. Rare: networks of stopped tasks are neither.
        for task_id in sorted(set(batch) - self.engine.networks_removed(result)):
            alone = await self.transport.run(self.engine.network_remove_argv(task_id), timeout=REMOVE_TIMEOUT)
            if not self.engine.network_gone(alone):
                log.warning("could not remove the network of task %s (left for later): %s", task_id, alone.error_text())

    async def close(self) -> None:
        """Finish what was handed over, for a while; what is left is found again as leftovers."""
        if not self._working():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._work), FINISH_ON_CLOSE)
        self._work.cancel()
