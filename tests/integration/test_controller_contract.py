"""The controller against in-memory backends: races, retries, timeouts, unreachable resources.

Each test runs the real controller in this process, on a real database, with backends from
tests/fakes.py whose starts and polls a test can hold at a gate — so a race is reproduced in
the exact order that broke it, in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from rosetta.catalog.models import Software
from rosetta.computing import backends
from rosetta.computing.contract import Seen, TaskRef
from rosetta.computing.errors import ImageMissing, Unreachable
from rosetta.computing.models import Resource
from rosetta.computing.schedulers.base import Backend
from rosetta.tasks import controller as controller_module
from rosetta.tasks import services
from rosetta.tasks.controller import Controller
from rosetta.tasks.models import Task
from rosetta.tasks.phases import Phase, Timeouts
from tests.checks import assert_legal
from tests.fakes import FakeBackend, Gate, Interface, Work

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUTS = Timeouts(start=5, stop=5)


@pytest.fixture
def world():
    user = get_user_model().objects.create_user("ada")
    Software.objects.create(name="hello", image="localhost/rosetta/hello", interface_port=8080, visibility="everyone")
    Resource.objects.create(name="here", max_cpus=4, max_memory_mb=4096)
    Resource.objects.create(name="there", max_cpus=4, max_memory_mb=4096)
    return user


class Running:
    """The controller, run in this process against the given backends (by resource name)."""

    def __init__(self, backends: dict[str, Backend], timeouts: Timeouts = TIMEOUTS, instance: str = "test") -> None:
        self.controller = Controller(
            backend_for=lambda resource, user: backends[resource.name], timeouts=timeouts, instance=instance
        )

    async def __aenter__(self) -> Controller:
        await self.controller.refresh_workers()
        self.refresher = asyncio.create_task(self._refresh())
        return self.controller

    async def _refresh(self) -> None:
        while True:  # as run_forever does on wake-ups: new tasks may bring new resources
            await asyncio.sleep(0.05)
            await self.controller.refresh_workers()

    async def __aexit__(self, *exc) -> None:
        self.refresher.cancel()
        await self.controller.close()


@sync_to_async
def start(user, name: str, resource: str = "here", memory_mb: int = 64) -> str:
    return services.start_task(user, services.TaskRequest("hello", resource, name=name, memory_mb=memory_mb)).id


@sync_to_async
def stop(task_id: str) -> None:
    services.request_stop(Task.objects.get(pk=task_id))


@sync_to_async
def row(task_id: str) -> Task:
    return Task.objects.get(pk=task_id)


@sync_to_async
def events(task_id: str) -> list[tuple[str, str]]:
    return list(Task.objects.get(pk=task_id).events.values_list("phase", "reason"))


async def until(task_id: str, *phases: str, timeout: float = 5) -> Task:
    deadline = time.monotonic() + timeout
    while True:
        task = await row(task_id)
        if task.phase in phases:
            return task
        assert time.monotonic() < deadline, f"{task_id} stayed {task.phase}: {await events(task_id)}"
        await asyncio.sleep(0.01)


async def test_a_job_ending_during_the_poll_does_not_let_the_pass_act_on_its_old_row(world):
    async with Interface() as interface:
        backend = FakeBackend(interface=interface)
        backend.start_gate = Gate()
        async with Running({"here": backend, "there": FakeBackend("there")}):
            task_id = await start(world, "raced")
            await asyncio.wait_for(backend.start_gate.waiting.wait(), 5)  # the start job is launching
            # A later pass reads the row (still `created`) and is held in its poll...
            backend.poll_gate = Gate()
            await asyncio.wait_for(backend.poll_gate.waiting.wait(), 5)
            # ...while the start job finishes: launched, starting, running.
            backend.start_gate.opened.set()
            await until(task_id, "running")
            backend.poll_gate.opened.set()  # the held pass goes on with its old row
            await asyncio.sleep(0.3)
            history = await events(task_id)
    assert_legal(history)
    assert [phase for phase, _ in history][-1] == "running"
    assert not any("controller restart" in reason for _, reason in history), history
    assert backend.starts == [task_id]


async def test_a_write_decided_on_an_older_revision_is_dropped(world):
    task_id = await start(world, "cas")
    first, stale = await row(task_id), await row(task_id)
    assert await sync_to_async(first.transition)(
        Phase.STARTING, "Launched.", endpoint_host="127.0.0.1", endpoint_port=1
    )
    assert not await sync_to_async(stale.transition)(Phase.STOPPED, "Decided on an old row.")
    assert not await sync_to_async(stale.note)("A note from an old row.")
    assert (await row(task_id)).phase == "starting"
    assert [reason for _, reason in await events(task_id)][-1] == "Launched."
    await sync_to_async(Task.objects.filter(pk=task_id).delete)()
    assert not await sync_to_async(first.transition)(Phase.RUNNING, "The row is gone: nothing to update, no error.")


async def test_a_burst_of_stops_keeps_every_log_and_stops_each_task_once(world):
    async with Interface() as interface:
        backend = FakeBackend(interface=interface, poll_interval=0.01)
        async with Running({"here": backend, "there": FakeBackend("there")}):
            ids = [await start(world, f"burst-{n}") for n in range(40)]
            for task_id in ids:
                await until(task_id, "running")
            for task_id in ids:
                await stop(task_id)
            for task_id in ids:
                await until(task_id, "stopped")
            await asyncio.sleep(0.3)  # later passes must not redo anything
    for task_id in ids:
        history = await events(task_id)
        assert_legal(history)
        assert [phase for phase, _ in history].count("stopped") == 1
        assert (await row(task_id)).log_tail == f"output of {task_id}\n"
    assert sorted(backend.ended) == sorted(ids)  # each ended exactly once
    assert sorted(backend.starts) == sorted(ids)


async def test_the_start_timeout_holds_to_within_one_poll_interval(world):
    async with Interface(silent=True) as interface:
        backend = FakeBackend(interface=interface, poll_interval=0.2)
        async with Running({"here": backend, "there": FakeBackend("there")}, Timeouts(start=1.0, stop=5)):
            task_id = await start(world, "silent")
            await until(task_id, "failed", timeout=10)
    times = await sync_to_async(lambda: {e.phase: e.time for e in Task.objects.get(pk=task_id).events.all()})()
    waited = (times["failed"] - times["starting"]).total_seconds()
    assert 1.0 <= waited <= 1.0 + 0.2 + 0.15, waited


async def test_transient_start_errors_are_retried_with_backoff_and_said(world, monkeypatch):
    monkeypatch.setattr(controller_module, "RETRY_DELAYS", (0.05, 0.1))
    async with Interface() as interface:
        backend = FakeBackend(interface=interface)
        backend.start_errors = [Unreachable("ssh: connection reset."), Unreachable("ssh: connection reset.")]
        async with Running({"here": backend, "there": FakeBackend("there")}):
            task_id = await start(world, "flaky")
            await until(task_id, "running")
    reasons = [reason for _, reason in await events(task_id)]
    assert "Could not start on here: ssh: connection reset. Trying again in 0.05 s." in reasons
    assert "Could not start on here: ssh: connection reset. Trying again in 0.1 s." in reasons
    assert len(backend.starts) == 3


async def test_a_start_that_keeps_failing_transiently_gives_up_once_a_start_may_take_no_longer(world, monkeypatch):
    monkeypatch.setattr(controller_module, "RETRY_DELAYS", (0.05, 0.1))
    backend = FakeBackend()
    backend.start_errors = [Unreachable("podman: overlay mount busy.")] * 1000
    async with Running({"here": backend, "there": FakeBackend("there")}, Timeouts(start=0.6, stop=5)):
        task_id = await start(world, "never")
        task = await until(task_id, "failed", timeout=5)
    history = await events(task_id)
    assert_legal(history)
    reason = history[-1][1]
    assert reason.startswith("Could not start on here: podman: overlay mount busy. Rosetta tried "), reason
    assert "gave up" in reason
    assert 3 <= len(backend.starts) <= 12  # retried with backoff, then no more
    assert task.exit_code is None


async def test_a_start_decided_before_a_stop_request_launches_nothing(world):
    backend = FakeBackend()
    task_id = await start(world, "changed-mind")
    backend.poll_gate = Gate()  # the first pass reads the task as wanted running, then waits in its poll
    async with Running({"here": backend, "there": FakeBackend("there")}):
        await asyncio.wait_for(backend.poll_gate.waiting.wait(), 5)
        await stop(task_id)  # the user changes their mind meanwhile
        backend.poll_gate.opened.set()  # the pass decides to start from the row it read
        task = await until(task_id, "stopped")
        await asyncio.sleep(0.3)
    assert backend.starts == []
    assert task.backend_state == {}
    assert [reason for _, reason in await events(task_id)][-1] == controller_module.NEVER_LAUNCHED


async def test_a_refusal_fails_the_task_in_plain_words_with_the_raw_text_kept(world):
    backend = FakeBackend()
    backend.start_errors = [ImageMissing("localhost/x:1.0", "Error: pinging container registry localhost: refused")]
    async with Running({"here": backend, "there": FakeBackend("there")}):
        task_id = await start(world, "ghost")
        await until(task_id, "failed")
    event = await sync_to_async(lambda: Task.objects.get(pk=task_id).events.last())()
    assert event.reason == "Image localhost/x:1.0 does not exist on here."
    assert event.detail == "Error: pinging container registry localhost: refused"
    assert backend.starts == [task_id]  # not retried


async def test_a_backend_that_never_answers_holds_up_no_other(world):
    async with Interface() as interface:
        stuck, healthy = FakeBackend("stuck"), FakeBackend("healthy", interface=interface)
        stuck.hang = True
        async with Running({"here": healthy, "there": stuck}):
            waiting = await start(world, "on-the-stuck-one", resource="there")
            began = time.monotonic()
            task_id = await start(world, "on-the-healthy-one")
            await until(task_id, "running", timeout=2)
            assert time.monotonic() - began < 0.5
            assert (await row(waiting)).phase == "created"  # nothing decided without an answer


async def test_an_unreachable_resource_is_said_once_and_its_recovery_too(world):
    async with Interface() as interface:
        backend = FakeBackend(interface=interface)
        async with Running({"here": backend, "there": FakeBackend("there")}):
            task_id = await start(world, "patient")
            await until(task_id, "running")
            backend.poll_error = Unreachable("ssh: no route to host.")
            await asyncio.sleep(0.5)  # many failed polls
            assert (await row(task_id)).phase == "running"  # unreachable is not ended
            backend.poll_error = None
            await asyncio.sleep(0.3)
    reasons = [reason for _, reason in await events(task_id)]
    lost = [r for r in reasons if "is not answering" in r]
    assert lost == [
        "here is not answering (ssh: no route to host.); Rosetta keeps trying and leaves the task as it is meanwhile."
    ]
    assert reasons[-1] == "here answers again."


async def test_memory_kills_are_said_for_helpers_and_for_the_main_program(world):
    async with Interface() as interface:
        backend = FakeBackend(interface=interface)
        async with Running({"here": backend, "there": FakeBackend("there")}):
            task_id = await start(world, "hungry", memory_mb=64)
            await until(task_id, "running")
            backend.work[task_id].memory_kills = 1  # a kernel of a notebook, say
            await asyncio.sleep(0.3)
            assert (await row(task_id)).phase == "running"
            backend.finish(task_id, exit_code=137, memory_kills=2)
            task = await until(task_id, "exited")
    reasons = [reason for _, reason in await events(task_id)]
    assert "A process (python3) ran out of memory (limit 64 MiB) and was killed; the task goes on." in reasons
    assert reasons[-1] == "The program ran out of memory (limit 64 MiB) and was killed."
    assert task.exit_code == 137 and task.memory_kills == 2


async def test_a_stop_during_a_burst_of_starts_begins_at_once(world):
    async with Interface() as interface:
        backend = FakeBackend(interface=interface, max_starts=1)
        backend.start_gate = Gate()  # every launch is held: the burst queues for the one slot
        async with Running({"here": backend, "there": FakeBackend("there")}):
            ids = [await start(world, f"queued-{n}") for n in range(10)]
            await asyncio.wait_for(backend.start_gate.waiting.wait(), 5)
            asked = time.monotonic()
            await stop(ids[-1])  # waiting for a slot: the stop must not wait for the others
            await until(ids[-1], "stopped", timeout=2)
            assert time.monotonic() - asked < 1
            backend.start_gate.opened.set()
            for task_id in ids[:-1]:
                await until(task_id, "running")
    assert ids[-1] not in backend.starts
    assert [reason for _, reason in await events(ids[-1])][-1] == "Stopped before its container was launched."


async def test_queued_work_is_shown_placed_and_can_be_cancelled(world):
    async with Interface() as interface:
        backend = FakeBackend(interface=interface, queue=True)
        async with Running({"here": backend, "there": FakeBackend("there")}):
            placed, cancelled = await start(world, "placed"), await start(world, "cancelled")
            await until(placed, "queued")
            await until(cancelled, "queued")
            backend.work[placed].reason = "Resources"
            backend.place(placed)
            await until(placed, "running")
            await stop(cancelled)
            await until(cancelled, "stopped")
    assert cancelled in backend.ended
    assert_legal(await events(placed))
    assert "here started the work on 127.0.0.1; waiting for its interface to answer." in [
        r for _, r in await events(placed)
    ]


async def test_polls_grow_with_passes_not_with_starts(world):
    async with Interface() as interface:
        backend = FakeBackend(interface=interface, poll_interval=1.0)
        async with Running({"here": backend, "there": FakeBackend("there")}):
            ids = [await start(world, f"many-{n}") for n in range(60)]
            for task_id in ids:
                await until(task_id, "running", timeout=20)
    # Passes are throttled (MIN_PASS_GAP), and a start costs no listing of its own.
    assert backend.polls < 60, backend.polls
    assert sorted(backend.starts) == sorted(ids)


async def test_a_restarted_controller_adopts_the_work_instead_of_starting_it_again(world):
    async with Interface() as interface:
        backend = FakeBackend(interface=interface)
        task_id = await start(world, "survivor")
        # A controller launched the work, then died before it could record so.
        spec = await sync_to_async(controller_module._container_spec)(await row(task_id), "test")
        backend.work[task_id] = Work(spec, Seen.RUNNING, interface)
        async with Running({"here": backend, "there": FakeBackend("there")}):
            await until(task_id, "running")
    assert backend.starts == []
    assert_legal(await events(task_id))
    assert "Found the task's container after a controller restart." in [r for _, r in await events(task_id)]


async def listed(backend: Backend, instance: str) -> list[str]:
    return list(await backend.poll(instance, []))


async def _time_to_running(user, name: str) -> float:
    began = time.monotonic()
    task_id = await start(user, name)
    await until(task_id, "running", timeout=30)
    return time.monotonic() - began


async def test_local_tasks_start_as_fast_while_another_resource_never_answers(world):
    """The local resource on real podman, beside a resource whose polls never return."""
    stuck = FakeBackend("stuck")
    stuck.hang = True
    instance = f"test-{time.monotonic_ns()}"
    local = {"here": await sync_to_async(lambda: backends.backend_for(Resource.objects.get(name="here")))()}
    try:
        async with Running({**local, "there": FakeBackend("there")}, instance=instance):
            await _time_to_running(world, "warm-up")
            alone = [await _time_to_running(world, f"alone-{n}") for n in range(3)]
        async with Running({**local, "there": stuck}, instance=instance):
            await start(world, "waits-forever", resource="there")
            beside = [await _time_to_running(world, f"beside-{n}") for n in range(3)]
    finally:  # as the controller would tidy up: containers and their networks
        here = local["here"]
        for task_id in {*await listed(here, instance), *await here.leftovers(instance)}:
            await here.end(TaskRef(task_id), 0, 0)
        await here.close()  # networks are removed in the background: done before the loop goes
    assert sorted(beside)[1] < sorted(alone)[1] * 1.5 + 0.2, (alone, beside)


def _local_backend() -> Backend:
    return backends.backend_for(Resource.objects.get(name="here"))


async def _podman(backend: Backend, *args: str) -> str:
    result = await backend.transport.run([*backend.engine.prefix, *args], timeout=60)
    assert result.ok, result.error_text()
    return result.stdout


def _event_streams(instance: str) -> list[int]:
    """Pids of the `podman events` that follow ``instance``'s containers (this process's own)."""
    pids, label = [], f"label=rosetta.instance={instance}".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if argv[0].endswith(b"podman") and b"events" in argv and label in argv:
                pids.append(int(cmdline.parent.name))
    return pids


async def _noticed_ending(backend: Backend, task_id: str, monkeypatch) -> float:
    """Seconds from the task's container being killed (behind the controller's back) to the
    controller acting on it (ending the task's work: removing the container, keeping its output)."""
    acted = []
    end = backend.end

    async def noticing_end(task: TaskRef, grace_seconds: int, log_lines: int, keep=None) -> bytes:
        if task.task_id == task_id:
            acted.append(time.monotonic())
        return await end(task, grace_seconds, log_lines, keep=keep)

    monkeypatch.setattr(backend, "end", noticing_end)
    await _podman(backend, "kill", f"rosetta-{task_id}")
    killed = time.monotonic()
    task = await until(task_id, "exited", timeout=10)
    monkeypatch.setattr(backend, "end", end)
    assert task.exit_code == 137
    return acted[0] - killed


async def test_local_containers_are_followed_by_events_not_listed_on_every_pass(world, monkeypatch):
    """Real podman: while nothing happens, passes (every second) do not list the containers; a
    container that ends is noticed within a poll interval, also while the event stream is dead
    (polls list meanwhile) — and the stream comes back."""
    instance = f"test-{time.monotonic_ns()}"
    here = await sync_to_async(_local_backend)()
    listings = []
    list_argv = here.engine.list_argv
    monkeypatch.setattr(here.engine, "list_argv", lambda name: listings.append(name) or list_argv(name))
    budget = here.poll_interval + 0.5  # a pass's interval, and a listing on a busy machine
    try:
        async with Running({"here": here, "there": FakeBackend("there")}, instance=instance):
            first, second = await start(world, "ends"), await start(world, "ends-too")
            for task_id in (first, second):
                await until(task_id, "running", timeout=30)
            assert here.watch.live and len(_event_streams(instance)) == 1
            await asyncio.sleep(1.0)
            before = len(listings)
            await asyncio.sleep(4.0)  # four passes or so
            assert len(listings) - before <= 1, len(listings) - before
            assert await _noticed_ending(here, first, monkeypatch) < budget

            for pid in _event_streams(instance):  # the stream dies
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while here.watch.live:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert await _noticed_ending(here, second, monkeypatch) < budget
            deadline = time.monotonic() + 10
            while not (here.watch.live and _event_streams(instance)):
                assert time.monotonic() < deadline, "the event stream was not started again"
                await asyncio.sleep(0.1)
    finally:
        for task_id in {*await listed(here, instance), *await here.leftovers(instance)}:
            await here.end(TaskRef(task_id), 0, 0)
        await here.close()
    assert not _event_streams(instance)


async def test_a_task_network_that_could_not_be_removed_is_removed_later(world, monkeypatch):
    """Real podman: the stop does not wait for the task's network; a network whose removal
    failed (here: another container still held it) is found again and removed once it can be."""
    monkeypatch.setattr(controller_module, "PREPARE_AGAIN_AFTER", 1.0)
    instance = f"test-{time.monotonic_ns()}"
    here = await sync_to_async(_local_backend)()
    holder = f"rosetta-test-holder-{time.monotonic_ns()}"
    try:
        async with Running({"here": here, "there": FakeBackend("there")}, instance=instance):
            task_id = await start(world, "held")
            await until(task_id, "running", timeout=30)
            network = f"rosetta-{task_id}"
            await _podman(here, "run", "--detach", "--init", "--name", holder, "--network", network,
                          "localhost/rosetta/hello", "sleep", "120")  # fmt: skip
            await stop(task_id)
            await until(task_id, "stopped", timeout=30)
            await asyncio.sleep(1.5)  # the collector tried, and a later look at leftovers too
            assert network in (await _podman(here, "network", "ls", "--format", "{{.Name}}")).split()
            await _podman(here, "rm", "--force", "--time", "0", holder)
            deadline = time.monotonic() + 10
            while network in (await _podman(here, "network", "ls", "--format", "{{.Name}}")).split():
                assert time.monotonic() < deadline, "the network was not removed later"
                await asyncio.sleep(0.2)
    finally:
        await here.transport.run([*here.engine.prefix, "rm", "--force", "--ignore", "--time", "0", holder])
        for task_id in {*await listed(here, instance), *await here.leftovers(instance)}:
            await here.end(TaskRef(task_id), 0, 0)
        await here.close()
