"""Polls that list the containers again only when something changed.

The controller asks for every task's state on each of its passes, several times a second while
many tasks start or stop, and a listing (`podman ps --all`) cost 0.4–1.8 s during a burst. So
the scheduler keeps its last listing and follows the engine's event stream: what its own starts
and stops did is laid over the listing (it knows what they left), and a change it did not make
— a container that ended by itself, or was removed behind its back — makes the next poll list
again (and wakes whoever listens, the controller's worker, at once). A listing is taken again at
least every MAX_LISTING_AGE seconds all the same.

If the stream dies, every poll lists the containers, as without events, and the stream is
started again after a pause; it replays a little of the past (REPLAY) so that nothing falls
between a listing and the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rosetta.computing.contract import Observation
from rosetta.computing.engines.base import ContainerEvent, Engine
from rosetta.computing.errors import ComputingError
from rosetta.computing.transports.base import Transport
from rosetta.core import processes

log = logging.getLogger(__name__)

MAX_LISTING_AGE = 10.0  # seconds: listed again at least this often, whatever the events say
REPLAY = 2.0  # seconds of past events a (re)started stream is asked for
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds before the stream is started again
STEADY = 60.0  # a stream that ran this long counts as healthy again: the next restart is quick
OWN_EVENTS_FOR = 120.0  # seconds during which our own start or stop of a task explains its events


@dataclass(frozen=True)
class Listing:
    """A listing under way: when it began, and how many of our own changes it may reflect."""

    began: float
    changes: int


class ContainerWatch:
    def __init__(self, transport: Transport, engine: Engine) -> None:
        self.transport = transport
        self.engine = engine
        self.on_change: Callable[[], None] | None = None  # told when a change we did not make is heard
        self.live = False  # the event stream runs
        self.dirty = True  # something changed since the last listing began, or we cannot tell
        self.listed: dict[str, Observation] = {}
        self.listed_at = float("-inf")  # monotonic time the last listing began
        self.changes = 0  # our own changes so far (starts and removals), counted
        # What our changes left, newer than the last listing: task id -> (count, what; None: gone).
        self.own: dict[str, tuple[int, Observation | None]] = {}
        # What we are doing or did lately to a task (True: starting it, False: ending it), and since when.
        self.doing: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self.tainted: set[str] = set()  # tasks that changed by other hands while we were at them
        self._follower: asyncio.Task | None = None

    # -- what the scheduler asks ----------------------------------------------------------------

    def follow(self, instance: str) -> None:
        """Follow the instance's containers (from the running loop on); safe to repeat."""
        follower = self._follower
        if follower is not None and not follower.done() and follower.get_loop() is asyncio.get_running_loop():
            return
        self.live, self.dirty = False, True  # until it runs (a follower of a closed loop never said it ended)
        self._follower = asyncio.create_task(self._follow(instance))

    def view(self) -> dict[str, Observation] | None:
        """The containers as they are, without a listing; None when a listing is due."""
        if not self.live or self.dirty or time.monotonic() - self.listed_at > MAX_LISTING_AGE:
            return None
        return self._overlaid()

    def listing(self) -> Listing:
        """A listing begins: what changes from now on is news to it."""
        self.dirty = False
        return Listing(time.monotonic(), self.changes)

    def listed_as(self, listing: Listing, observations: dict[str, Observation]) -> dict[str, Observation]:
        """The listing's result, with our own changes made while it ran laid over it."""
        self.listed, self.listed_at = observations, listing.began
        self.own = {task_id: own for task_id, own in self.own.items() if own[0] > listing.changes}
        self.tainted &= set(self.doing)
        return self._overlaid()

    def listing_failed(self) -> None:
        self.dirty = True

    # -- what the scheduler does ----------------------------------------------------------------

    def starting(self, task_id: str) -> None:
        self._doing(task_id, True)

    def started(self, task_id: str, seen: Observation | None) -> None:
        """Our start left ``seen`` (None: no container)."""
        self._changed(task_id, seen)

    def ending(self, task_id: str) -> None:
        self._doing(task_id, False)

    def ended(self, task_id: str) -> None:
        """Our stop removed the task's container."""
        self._changed(task_id, None)

    def unsure(self) -> None:
        """Something we did failed half-way: we cannot tell what it left."""
        self.dirty = True

    def _doing(self, task_id: str, coming: bool) -> None:
        now = time.monotonic()
        self.doing[task_id] = (coming, now)
        self.doing.move_to_end(task_id)
        while self.doing and now - next(iter(self.doing.values()))[1] > OWN_EVENTS_FOR:
            self.doing.popitem(last=False)
        self.tainted.discard(task_id)

    def _changed(self, task_id: str, seen: Observation | None) -> None:
        if task_id in self.tainted:
            self.dirty = True  # other hands were at it meanwhile: what we saw may be old already
            return
        self.changes += 1
        self.own[task_id] = (self.changes, seen)

    def _overlaid(self) -> dict[str, Observation]:
        view = dict(self.listed)
        for task_id, (_, seen) in self.own.items():
            if seen is None:
                view.pop(task_id, None)
            else:
                view[task_id] = seen
        return view

    # -- the event stream -----------------------------------------------------------------------

    def heard(self, event: ContainerEvent) -> None:
        doing = self.doing.get(event.task_id)
        if doing is not None and doing[0] == event.coming and time.monotonic() - doing[1] <= OWN_EVENTS_FOR:
            return  # our own start or stop, told back
        self.tainted.add(event.task_id)
        self.own.pop(event.task_id, None)
        self._news()

    def _news(self) -> None:
        self.dirty = True
        if self.on_change is not None:
            self.on_change()

    async def _follow(self, instance: str) -> None:
        failures = 0
        while True:
            began = time.monotonic()
            why = "it ended"
            argv = self.engine.events_argv(instance, time.time() - REPLAY)
            if self.transport.direct:
                argv = processes.dies_with_parent(argv)  # not left behind if the platform is killed
            self.dirty, self.live = True, True
            try:
                await self._read(argv)
            except ComputingError as error:
                why = str(error)
            finally:
                self.live = False
            if time.monotonic() - began > STEADY:
                failures = 0
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            failures += 1
            log.warning(
                "the %s event stream stopped (%s): polls list the containers until it is back, in %g s",
                self.engine.name, why, delay,
            )  # fmt: skip
            self._news()
            await asyncio.sleep(delay)

    async def _read(self, argv: list[str]) -> None:
        rest = b""
        async for chunk in self.transport.stream(argv):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                if event := self.engine.parse_event(line.decode(errors="replace")):
                    self.heard(event)

    async def close(self) -> None:
        follower, self._follower = self._follower, None
        if follower is None or follower.done() or follower.get_loop() is not asyncio.get_running_loop():
            return
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
