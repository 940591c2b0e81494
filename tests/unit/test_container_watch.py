"""The scheduler's watch: when a poll may answer from the last listing and when it must list again."""

from __future__ import annotations

import asyncio
import json

import pytest

from rosetta.computing.contract import Observation, Seen
from rosetta.computing.engines.base import ContainerEvent
from rosetta.computing.engines.podman import PodmanEngine
from rosetta.computing.schedulers import watch as watch_module
from rosetta.computing.schedulers.watch import ContainerWatch
from tests.fakes import FakeTransport


def running(task_id: str) -> Observation:
    return Observation(task_id, Seen.RUNNING, backend_state={"container": f"c-{task_id}"})


def watching(listed: dict[str, Observation] | None = None) -> ContainerWatch:
    """A watch whose stream runs, with a listing taken."""
    watch = ContainerWatch(FakeTransport("here"), PodmanEngine())
    watch.live = True
    watch.listed_as(watch.listing(), dict(listed or {}))
    return watch


def test_without_a_running_stream_every_poll_lists():
    watch = watching({"t1": running("t1")})
    assert watch.view() == {"t1": running("t1")}
    watch.live = False
    assert watch.view() is None


def test_our_own_starts_and_stops_need_no_listing():
    watch = watching({"t1": running("t1")})
    watch.starting("t2")
    watch.heard(ContainerEvent("t2", True, "create"))  # our own start, told back
    watch.started("t2", running("t2"))
    watch.ending("t1")
    watch.heard(ContainerEvent("t1", False, "died"))
    watch.ended("t1")
    watch.heard(ContainerEvent("t1", False, "remove"))  # told late: still ours
    assert watch.view() == {"t2": running("t2")}


def test_a_container_ending_by_itself_calls_for_a_listing_and_says_so():
    heard = []
    watch = watching({"t1": running("t1")})
    watch.on_change = lambda: heard.append(True)
    watch.starting("t1")
    watch.started("t1", running("t1"))
    watch.heard(ContainerEvent("t1", False, "died"))  # not our doing: we started it
    assert watch.view() is None and heard == [True]


def test_a_change_made_while_a_listing_runs_is_laid_over_it():
    watch = watching()
    listing = watch.listing()  # the listing may or may not have seen what follows
    watch.starting("t1")
    watch.started("t1", running("t1"))
    watch.ending("t0")
    watch.ended("t0")
    assert watch.listed_as(listing, {"t0": running("t0")}) == {"t1": running("t1")}
    # A listing begun after those changes is believed as it is.
    assert watch.listed_as(watch.listing(), {"t1": Observation("t1", Seen.ENDED)}) == {
        "t1": Observation("t1", Seen.ENDED)
    }


def test_what_a_start_saw_is_not_believed_when_other_hands_were_at_the_container_meanwhile():
    watch = watching()
    watch.starting("t1")
    watch.heard(ContainerEvent("t1", False, "died"))  # it died while we launched it
    watch.listed_as(watch.listing(), {"t1": Observation("t1", Seen.ENDED)})
    watch.started("t1", running("t1"))  # what the start's inspection saw, before it died
    assert watch.view() is None  # listed again, not taken from the start


def test_a_listing_is_taken_again_after_a_while_whatever_the_events_say(monkeypatch):
    watch = watching({"t1": running("t1")})
    monkeypatch.setattr(watch_module, "MAX_LISTING_AGE", 0.0)
    assert watch.view() is None


def test_a_failed_listing_is_taken_again():
    watch = watching()
    watch.listing()
    watch.listing_failed()
    assert watch.view() is None


class Streams(FakeTransport):
    """The first stream yields the given lines, then ends (the engine's stream died); the next runs on."""

    def __init__(self, lines: list[bytes]) -> None:
        super().__init__("here")
        self.lines = lines
        self.started = 0

    async def stream(self, argv):
        self.started += 1
        for line in self.lines:
            yield line
        await asyncio.sleep(0.05 if self.started == 1 else 60)


async def test_a_stream_that_dies_is_started_again_and_polls_list_meanwhile(monkeypatch):
    monkeypatch.setattr(watch_module, "RESTART_DELAYS", (0.1,))
    died = json.dumps({"ID": "c1", "Status": "died", "Type": "container", "Attributes": {"rosetta.task": "t1"}})
    transport = Streams([died[:20].encode(), died[20:].encode() + b"\n"])  # a line in two chunks
    heard = []
    watch = ContainerWatch(transport, PodmanEngine())
    watch.on_change = lambda: heard.append(True)
    watch.follow("i1")
    await asyncio.sleep(0.02)
    assert watch.live and heard == [True]  # the line was read whole
    watch.listed_as(watch.listing(), {})
    await asyncio.sleep(0.1)
    assert not watch.live and watch.view() is None  # died: polls list
    await asyncio.sleep(0.1)
    assert transport.started == 2 and watch.live  # back
    await watch.close()
    assert not watch.live


@pytest.fixture(autouse=True)
def _no_pdeathsig(monkeypatch):
    monkeypatch.setattr(FakeTransport, "direct", False)
