"""The controller: the only writer of tasks' actual state.

Level-triggered and restart-safe. One worker per backend (the machinery behind one or more
resources) runs its own passes: read that backend's tasks from the database, poll the
backend once, decide per task what to do (rosetta.tasks.phases.decide), hand the doing to a
job. A backend that is slow or unreachable holds up only its own worker; each polls on its
own interval, and at once when the API or a finished job signals a change.

Two rules keep a pass from acting on stale rows: a task that had a job in flight when the
pass read it is left to that job (even if the job ended during the poll), and every write is
conditional on the row's revision as read (``Task.transition``): a write decided from an
older row updates nothing and is dropped.

Nothing that matters lives only in memory: killed and restarted, the controller finds the
work again from the database and the backends' listings.

Controllers on several machines sharing one database: each drives only the local resources of
its own machine (Resource.node), and of the others' backends, only those it leads
(rosetta.tasks.leadership): one active worker per backend, the others stand by and take over
within about a second of its controller's death.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from rosetta.accounts.models import SSHKey
from rosetta.accounts.ssh_keys import AUTHORIZED_KEYS_ENV, authorized_keys_value
from rosetta.catalog.models import Protocol
from rosetta.catalog.pushes import image_for
from rosetta.computing import backends
from rosetta.computing.contract import ContainerSpec, Mount, Observation, Seen, TaskRef
from rosetta.computing.errors import AccountRefused, ComputingError
from rosetta.computing.instance import instance_id
from rosetta.computing.models import Resource, of_other_machines
from rosetta.computing.schedulers.base import Backend
from rosetta.core import metrics, notify
from rosetta.core.database import db  # all ORM work runs in Django's one sync thread
from rosetta.registry import from_platform_registry
from rosetta.storage.services import task_id_base
from rosetta.tasks import leadership
from rosetta.tasks.logs import strip_probe_lines
from rosetta.tasks.models import MAX_LOG_TAIL, Task
from rosetta.tasks.phases import ACTIVE_PHASE_NAMES, FINAL_PHASE_NAMES, Act, Desired, Phase, TaskView, Timeouts, decide
from rosetta.tasks.probe import PROBE_TIMEOUT, interface_answers
from rosetta.tasks.secret import task_secret

log = logging.getLogger(__name__)

RESOURCES_REFRESH = 5.0  # seconds between looks for resources added, changed or retired
MIN_PASS_GAP = 0.2  # a backend is polled at most this often, however many jobs end meanwhile
PROBE_WINDOW = 2.0  # a probe job gives back the task this often, so passes see it end
PREPARE_AGAIN_AFTER = 60.0  # seconds
PASS_TIMEOUT = 120.0  # a pass stuck longer than this (a database lock, say) is abandoned and retried
LOG_TAIL_LINES = 5000
NEVER_LAUNCHED = "Stopped before its container was launched."
RETRY_DELAYS = (1, 2, 5, 10, 30, 60)  # seconds before retrying a start that met a transient error


def default_timeouts() -> Timeouts:
    return Timeouts(start=settings.TASK_START_TIMEOUT, stop=settings.TASK_STOP_TIMEOUT)


class Controller:
    def __init__(
        self,
        backend_for: Callable[[Resource, object], Backend] = backends.backend_for,
        timeouts: Timeouts | None = None,
        instance: str | None = None,
        leader: leadership.PostgresLeadership | leadership.FileLeadership | None = None,
    ) -> None:
        self.backend_for = backend_for
        self.timeouts = timeouts or default_timeouts()
        self.instance = instance or instance_id()
        self.leadership = leader or leadership.leadership_for_this_database(
            f"rosetta-controller {settings.NODE} {os.getpid()}"
        )
        self.workers: dict[Backend, BackendWorker] = {}

    async def run_forever(self) -> None:
        listener = notify.Listener(notify.CONTROLLER)
        listener.start()
        log.info("controller started (instance %s, machine %s)", self.instance, settings.NODE)
        topics = {notify.ANY}
        try:
            while True:
                try:
                    await self.refresh_workers()
                except Exception:  # a bad look at the resources must not end the controller
                    log.exception("cannot read the resources")
                self.wake(topics)
                topics = await listener.wait(RESOURCES_REFRESH)
        finally:
            listener.close()
            await self.close()
            await self.leadership.close()

    async def refresh_workers(self) -> None:
        """One worker per backend in use; workers of backends no longer in use are closed."""
        wanted = await db(self._backends_in_use)()
        for backend, (scopes, key, names) in wanted.items():
            if backend in self.workers:
                self.workers[backend].scopes = scopes
            else:
                self.workers[backend] = BackendWorker(self, backend, scopes, key)
                self.workers[backend].start()
            self.workers[backend].serves = ", ".join(sorted(names))
        for backend in set(self.workers) - set(wanted):
            await self.workers.pop(backend).close()
        if self.backend_for is backends.backend_for:
            await backends.forget(set(wanted))

    def _backends_in_use(self) -> dict[Backend, tuple[set[Scope], int, set[str]]]:
        """Each backend with the scopes it serves — (resource, None) for a resource reached one way
        for all, (resource, owner) where each user is their own account there — and its lock
        number (the same on every machine). backend_for gives everything reached the same way
        the same object."""
        wanted: dict[Backend, tuple[set[Scope], int, set[str]]] = {}
        for resource, owner in _scopes_in_use():
            try:
                backend = self.backend_for(resource, owner)
            except AccountRefused as error:
                _refused(resource, owner, error)
                continue
            except Exception:  # a resource that cannot be built must not stop the others
                log.exception("cannot use resource %s", resource.name)
                continue
            scopes, _, names = wanted.setdefault(
                backend, (set(), leadership.lock_key(resource.backend_key(owner)), set())
            )
            scopes.add((resource.id, owner.id if owner else None))
            names.add(resource.name + (f" for {owner.get_username()}" if owner else ""))
        return wanted

    def wake(self, topics: set[str]) -> None:
        """Wake the workers a change concerns (topics are resource ids), all for ANY."""
        for worker in self.workers.values():
            if notify.ANY in topics or any(str(resource_id) in topics for resource_id, _ in worker.scopes):
                worker.wake()

    async def close(self) -> None:
        for worker in self.workers.values():
            await worker.close()
        self.workers.clear()


class StaleRow(Exception):
    """The task's row changed since the pass read it: what was decided from it is dropped."""


@dataclass(eq=False)
class Job:
    """Work in flight for one task. A cancellable job may be interrupted by a later pass (to
    carry out a stop at once); it is not cancellable while it changes the resource."""

    act: Act
    cancellable: bool = True
    task: asyncio.Task | None = None


Scope = tuple[int, int | None]  # (resource id, owner id where each user is their own account there)


@dataclass(frozen=True)
class Retry:
    """A start that met transient errors: retried with backoff for as long as a start may take
    (the start timeout, from the first failure), then the task fails saying why."""

    first_at: float  # monotonic time of the first failure
    attempts: int = 0
    next_at: float = 0.0


class BackendWorker:
    def __init__(self, controller: Controller, backend: Backend, scopes: set[Scope], lock_key: int = 0) -> None:
        self.controller = controller
        self.backend = backend
        self.scopes = scopes
        self.lock_key = lock_key  # the backend's, for leadership across machines
        self.leading = False
        self.serves = ""  # the resources it serves, in words
        self.jobs: dict[str, Job] = {}
        self.woken = asyncio.Event()
        self.reachable = True
        self.retries: dict[str, Retry] = {}  # task id -> its failed start attempts so far
        self.prepared_until = 0.0  # monotonic time when the backend's preparation is due again
        self._loop_task: asyncio.Task | None = None

    @property
    def timeouts(self) -> Timeouts:
        return self.controller.timeouts

    def start(self) -> None:
        self.backend.on_change(self.wake)
        self._loop_task = asyncio.create_task(self._run())

    def wake(self) -> None:
        self.woken.set()

    async def close(self) -> None:
        tasks = [job.task for job in self.jobs.values() if job.task] + ([self._loop_task] if self._loop_task else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.controller.leadership.release(self.lock_key)

    async def _lead(self) -> bool:
        """Whether this worker is the active one for its backend (on every machine, one is); a
        worker that stops being it leaves what it was doing that changes nothing."""
        try:
            leading = await self.controller.leadership.hold(self.lock_key)
        except Exception:  # a lock that cannot be asked for (its file, say) is not held; try again
            log.exception("controller: cannot take the lock of %s", self.serves)
            leading = False
        if leading and not self.leading:
            log.info("controller: now the active controller of %s (%s)", self.serves, self.backend.description)
            self.prepared_until = 0.0  # whoever led before, see the backend afresh
            self.reachable = True
        elif self.leading and not leading:
            log.warning("controller: no longer the active controller of %s: standing by", self.serves)
            for job in self.jobs.values():
                if job.cancellable and job.task:
                    job.task.cancel()
        self.leading = leading
        return leading

    async def _run(self) -> None:
        while True:
            if not await self._lead():
                await asyncio.sleep(leadership.STANDBY_RETRY)
                continue
            began = time.monotonic()
            try:
                await asyncio.wait_for(self.reconcile(), PASS_TIMEOUT)
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():
                    raise  # the worker itself is being closed
                log.exception("reconcile pass on %s was cancelled from inside", self.backend.description)
            except Exception:  # one bad pass must not end the worker
                log.exception("reconcile pass on %s failed", self.backend.description)
            metrics.PASS_SECONDS.observe(time.monotonic() - began)
            await asyncio.sleep(max(0.0, MIN_PASS_GAP - (time.monotonic() - began)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), self.backend.poll_interval)
            self.woken.clear()

    # -- one pass -------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        busy = set(self.jobs)  # before reading: a job that ends during the poll still counts
        tasks = await db(_tasks_on)(self.scopes)
        try:
            leftovers = await self._prepare()
            observed = await asyncio.wait_for(
                self.backend.poll(self.controller.instance, [_ref(task) for task in tasks]), self.backend.poll_timeout
            )
        except (ComputingError, TimeoutError) as error:
            for name in await db(_resource_names)(self.scopes):
                metrics.POLL_ERRORS.labels(name).inc()
            await self._lost(tasks, error)
            return
        if not self.reachable:
            await self._regained(tasks)
        self.retries = {task.id: self.retries[task.id] for task in tasks if task.id in self.retries}
        now = timezone.now()
        for task in tasks:
            if task.id in busy or task.id in self.jobs:
                self._interrupt_if_stopping(task)
                continue
            seen = observed.get(task.id)
            view = TaskView(task.phase_enum, Desired(task.desired), (now - task.phase_since).total_seconds())
            act = decide(view, seen, self.timeouts)
            if act is Act.START and not self._retry_due(task.id):
                continue
            if act is Act.NOTHING:
                if seen is not None and _news(task, seen):
                    self._spawn(task.id, act, lambda job, task=task, seen=seen: self._observe(task, seen))
                continue
            self._spawn(task.id, act, lambda job, act=act, task=task, seen=seen: self._act(job, act, task, seen))
        known = {task.id for task in tasks} | set(self.jobs)
        strays = [task_id for task_id in {*observed, *leftovers} if task_id not in known]
        if strays:
            for task_id in await db(_finished_or_gone)(strays):
                ref = TaskRef(task_id, observed[task_id].backend_state if task_id in observed else {})
                self._spawn(task_id, Act.CLEAN_UP, lambda job, ref=ref: self._remove_stray(ref))

    async def _prepare(self) -> list[str]:
        """Ready the backend before its first task, and again now and then (someone may have
        flushed the machine's firewall): no task starts where it cannot be isolated. At the
        same moments, the tasks that left something behind on the resource (to remove)."""
        if time.monotonic() < self.prepared_until:
            return []
        await asyncio.wait_for(self.backend.prepare(), self.backend.poll_timeout)
        leftovers = await asyncio.wait_for(self.backend.leftovers(self.controller.instance), self.backend.poll_timeout)
        self.prepared_until = time.monotonic() + PREPARE_AGAIN_AFTER
        return leftovers

    def _interrupt_if_stopping(self, task: Task) -> None:
        job = self.jobs.get(task.id)
        if job is not None and job.cancellable and task.desired != Desired.RUNNING.value and job.task:
            job.task.cancel()

    def _retry_due(self, task_id: str) -> bool:
        retry = self.retries.get(task_id)
        return retry is None or time.monotonic() >= retry.next_at

    def _spawn(self, task_id: str, act: Act, work: Callable[[Job], Coroutine]) -> None:
        job = Job(act, cancellable=act in (Act.START, Act.PROBE, Act.NOTHING))
        job.task = asyncio.create_task(self._guard(task_id, job, work(job)))
        self.jobs[task_id] = job

        def done(_: asyncio.Task) -> None:
            if self.jobs.get(task_id) is job:
                del self.jobs[task_id]
            self.wake()  # its outcome may call for the next step at once

        job.task.add_done_callback(done)

    async def _guard(self, task_id: str, job: Job, work: Coroutine) -> None:
        try:
            await work
        except ComputingError as error:
            log.warning(
                "%s of task %s on %s: %s %s", job.act.value, task_id, self.backend.description, error, error.detail
            )
            await db(_note_trouble)(task_id, self.backend.description, error)
        except asyncio.CancelledError:
            raise
        except StaleRow:
            log.info("%s of task %s: the task changed meanwhile; the next pass decides again", job.act.value, task_id)
        except Exception:
            log.exception("%s of task %s on %s failed", job.act.value, task_id, self.backend.description)

    # -- acts -----------------------------------------------------------------------------------

    async def _act(self, job: Job, act: Act, task: Task, seen: Observation | None) -> None:
        resource = task.resource.name
        match act:
            case Act.START:
                await self._start(job, task)
            case Act.ADOPT:
                if await db(task.transition)(
                    Phase.STARTING, "Found the task's container after a controller restart.", **_placed(seen)
                ):
                    await self._probe(job, task)
            case Act.QUEUE:
                said = _queued_reason(resource, seen)
                await db(task.transition)(Phase.QUEUED, said, backend_state=seen.backend_state)
            case Act.PLACE:
                if await db(task.transition)(Phase.STARTING, _placed_reason(resource, seen), **_placed(seen)):
                    await self._probe(job, task)
            case Act.PROBE:
                if _news(task, seen) and not await self._observe(task, seen):
                    return
                await self._probe(job, task)
            case Act.STOP:
                await self._stop(task, seen)
            case Act.CANCEL:
                if await db(task.transition)(Phase.STOPPED, NEVER_LAUNCHED):
                    await self._forget_if_deleted(task)
            case Act.ENDED:
                await self._ended(task, seen)
            case Act.VANISHED:
                await db(task.transition)(
                    Phase.EXITED, "The container is gone: it was removed outside Rosetta or the machine restarted."
                )
            case Act.TIMED_OUT:
                reason = f"The interface did not answer within {self.timeouts.start:g} s; the container was removed."
                await self._end_as(task, Phase.FAILED, reason, grace=2, cause="start_timeout")
            case Act.STOP_TIMED_OUT:
                reason = (
                    f"The container could not be removed within {self.timeouts.stop:g} s; "
                    "Rosetta keeps trying in the background."
                )
                await db(task.transition)(Phase.FAILED, reason, cause="stop_timeout")
            case Act.CLEAN_UP:
                await self._end(task, grace=0, log_lines=0)
            case Act.FORGET:
                await self._forget_if_deleted(task)

    async def _start(self, job: Job, task: Task) -> None:
        async with self.backend.start_slots:  # waiting for a slot may be interrupted by a stop
            job.cancellable = False
            try:
                spec = await db(_container_spec)(task, self.controller.instance)
                # Marked before the resource is asked: from now on work may exist there.
                said = f"Launching the container from {spec.image} on {task.resource.name}."
                if not await db(task.launching)(said, backend_state={**task.backend_state, "launched": True}):
                    return  # the row changed since this pass read it, or a stop was asked meanwhile
                seen = await self.backend.start(spec)
            except ComputingError as error:
                await self._start_failed(task, error)
                return
        self.retries.pop(task.id, None)
        resource = task.resource.name
        if seen.state is Seen.QUEUED:
            await db(task.transition)(Phase.QUEUED, _queued_reason(resource, seen), backend_state=seen.backend_state)
        elif seen.state is Seen.ENDED:
            await self._end_as(task, Phase.EXITED, _ended_reason(task, seen), grace=0, exit_code=seen.exit_code)
        elif await db(task.transition)(
            Phase.STARTING, "The container is up; waiting for its interface to answer.", **_placed(seen)
        ):
            await self._probe(job, task)

    async def _start_failed(self, task: Task, error: ComputingError) -> None:
        resource = task.resource.name
        if not error.transient:
            await db(task.transition)(
                Phase.FAILED, error.explain(resource), detail=error.detail, cause=metrics.cause_of(error)
            )
            return
        now = time.monotonic()
        retry = self.retries.get(task.id) or Retry(first_at=now)
        if now - retry.first_at >= self.timeouts.start:
            self.retries.pop(task.id, None)
            reason = (
                f"Could not start on {resource}: {error} Rosetta tried {retry.attempts + 1} times "
                f"over {now - retry.first_at:.0f} s and gave up; start it again once {resource} works."
            )
            await db(task.transition)(Phase.FAILED, reason, detail=error.detail, cause=metrics.cause_of(error))
            return
        delay = RETRY_DELAYS[min(retry.attempts, len(RETRY_DELAYS) - 1)]
        self.retries[task.id] = Retry(retry.first_at, retry.attempts + 1, now + delay)
        await db(task.note)(f"Could not start on {resource}: {error} Trying again in {delay} s.", error.detail)

    async def _probe(self, job: Job, task: Task) -> None:
        """Probe quickly (most interfaces come up in well under a second), for a short window
        only, and never past the start deadline: the job blocks this task's reconciliation,
        and the next pass must still see a container that ended, or time the task out."""
        deadline = task.phase_since.timestamp() + self.timeouts.start
        window_ends = time.monotonic() + min(PROBE_WINDOW, deadline - time.time())
        job.cancellable = True  # looking and probing change nothing: a stop may interrupt them
        if not task.endpoint_port and not await self._find_endpoint(task, window_ends):
            return
        address = await self.backend.transport.reach(task.endpoint_host, task.endpoint_port)
        protocol = task.software.interface_protocol
        secret = task_secret(task.id)  # asked as the gateway will ask: interfaces refuse requests without it
        delay = 0.02
        while (left := window_ends - time.monotonic()) > 0:
            if await interface_answers(address, protocol, timeout=min(PROBE_TIMEOUT, left), secret=secret):
                job.cancellable = False
                await db(task.transition)(Phase.RUNNING, f"The interface answers ({protocol}).")
                return
            await asyncio.sleep(min(delay, max(0.0, window_ends - time.monotonic())))
            delay = min(delay * 1.5, 0.5)

    async def _find_endpoint(self, task: Task, window_ends: float) -> bool:
        """Look for where a started task listens within the probe's window, and record it: a
        batch job's launcher says so only once the interface listens, and waiting for the next
        poll (seconds apart on a cluster) would keep the user waiting that much longer."""
        delay = 0.1
        while self.backend.endpoint_comes_later and time.monotonic() < window_ends:
            if seen := await self.backend.late_endpoint(_ref(task)):
                return await self._observe(task, seen)
            await asyncio.sleep(min(delay, max(0.0, window_ends - time.monotonic())))
            delay = min(delay * 1.5, 0.5)
        return False

    async def _stop(self, task: Task, seen: Observation | None) -> None:
        """Idempotent, in an order a controller killed at any step can carry on from: the work
        stopped, its log tail kept on the task, the work removed (container, then network),
        then `stopped`. Run again after a crash, it finds the steps done so far done (with the
        work already gone, there are no logs to read, and those kept stay)."""
        stopping = task.phase_enum is Phase.STOPPING
        if not stopping and not await db(task.transition)(Phase.STOPPING, "Stopping, as requested."):
            return

        async def keep(log_tail: str) -> None:
            if not await db(task.observe)(log_tail=log_tail):
                raise StaleRow(task.id)

        if seen is not None:
            await self._end(task, grace=int(min(self.timeouts.stop, 10)), keep=keep)
        else:
            await self._end(task, grace=0, log_lines=0)  # idempotent; catches work the poll missed
        if await db(task.transition)(Phase.STOPPED, "The container was stopped and removed."):
            await self._forget_if_deleted(task)

    async def _ended(self, task: Task, seen: Observation) -> None:
        await self._end_as(
            task,
            Phase.EXITED,
            _ended_reason(task, seen),
            grace=0,
            detail=seen.detail,
            exit_code=seen.exit_code,
            memory_kills=max(task.memory_kills, seen.memory_kills),
        )

    async def _end_as(self, task: Task, phase: Phase, reason: str, grace: int, **fields) -> None:
        """End the work and record the task's final ``phase`` with its log tail, before the work
        and its logs are removed: a controller killed in between finds the task final, with its
        exit code and output, and removes what is left (Act.CLEAN_UP) rather than report work
        that vanished."""

        async def record(log_tail: str) -> None:
            if not await db(task.transition)(phase, reason, log_tail=log_tail, **fields):
                raise StaleRow(task.id)

        await self._end(task, grace, keep=record)
        if not task.is_final:  # there was nothing left to read the logs of
            await db(task.transition)(phase, reason, **fields)

    async def _observe(self, task: Task, seen: Observation) -> bool:
        """Record what changed on the resource while the phase did not: endpoint, backend
        state, processes killed by the memory limit."""
        fields = {}
        if seen.endpoint and seen.endpoint != task.endpoint:
            fields.update(endpoint_host=seen.endpoint[0], endpoint_port=seen.endpoint[1])
        if seen.backend_state and seen.backend_state != task.backend_state:
            fields["backend_state"] = seen.backend_state
        reason = ""
        queue_moved = seen.backend_state.get("reason") != task.backend_state.get("reason")
        if task.phase_enum is Phase.QUEUED and seen.reason and queue_moved:
            reason = _queued_reason(task.resource.name, seen)  # the queue's reason changed: say so
        if seen.memory_kills > task.memory_kills:
            fields["memory_kills"] = seen.memory_kills
            reason = (
                f"A process ({seen.killed_process or 'unknown'}) ran out of memory (limit {task.memory_mb} MiB) "
                "and was killed; the task goes on."
            )
        return await db(task.observe)(reason, **fields)

    async def _end(
        self,
        task: Task,
        grace: int,
        log_lines: int = LOG_TAIL_LINES,
        keep: Callable[[str], Coroutine] | None = None,
    ) -> None:
        """Stop and remove the task's work; ``keep`` is given its log tail before it is removed."""

        async def kept(output: bytes) -> None:
            if keep is not None:
                await keep(strip_probe_lines(output)[-MAX_LOG_TAIL:].decode(errors="replace"))

        async with self.backend.end_slots:
            await self.backend.end(_ref(task), grace, log_lines, keep=kept)

    async def _remove_stray(self, ref: TaskRef) -> None:
        async with self.backend.end_slots:
            await self.backend.end(ref, 0, 0)
        log.info("removed the leftover work of task %s on %s", ref.task_id, self.backend.description)

    async def _forget_if_deleted(self, task: Task) -> None:
        await db(_delete_if_requested)(task.id)

    # -- the backend's health -------------------------------------------------------------------

    async def _lost(self, tasks: list[Task], error: BaseException) -> None:
        what = str(error) or f"no answer within {self.backend.poll_timeout:g} s"
        await self._cancel_unlaunched(tasks)
        if self.reachable:
            self.reachable = False
            log.warning("%s is not answering: %s", self.backend.description, what)
            for task in tasks:
                if not task.is_final:
                    await db(task.note)(
                        f"{task.resource.name} is not answering ({what}); Rosetta keeps trying and "
                        "leaves the task as it is meanwhile.",
                        getattr(error, "detail", ""),
                    )

    async def _cancel_unlaunched(self, tasks: list[Task]) -> None:
        """Stops of tasks of which nothing was ever launched need no answer from the resource."""
        for task in tasks:
            never_launched = task.phase_enum is Phase.CREATED and not task.backend_state and task.id not in self.jobs
            stop = never_launched and task.desired != Desired.RUNNING.value
            if stop and await db(task.transition)(Phase.STOPPED, NEVER_LAUNCHED):
                await self._forget_if_deleted(task)

    async def _regained(self, tasks: list[Task]) -> None:
        self.reachable = True
        log.info("%s answers again", self.backend.description)
        for task in tasks:
            if not task.is_final:
                await db(task.note)(f"{task.resource.name} answers again.")


# -- what the controller says, and reads -----------------------------------------------------------


def _ref(task: Task) -> TaskRef:
    return TaskRef(task.id, task.backend_state, task.endpoint, task.software.interface_port)


def _news(task: Task, seen: Observation) -> bool:
    """Whether the backend observed something the row does not say yet."""
    return (
        (seen.endpoint is not None and seen.endpoint != task.endpoint)
        or (bool(seen.backend_state) and seen.backend_state != task.backend_state)
        or seen.memory_kills > task.memory_kills
    )


def _placed(seen: Observation) -> dict:
    fields = {"backend_state": seen.backend_state, "image_id": seen.image_id}
    if seen.endpoint:
        fields.update(endpoint_host=seen.endpoint[0], endpoint_port=seen.endpoint[1])
    return fields


def _queued_reason(resource: str, seen: Observation) -> str:
    said = f"Waiting in the queue of {resource}" + (f": {seen.reason}" if seen.reason else "")
    starts = seen.backend_state.get("starts_at")
    return said + (f" (expected to start at {starts[11:16]} UTC)." if starts else ".")


def _placed_reason(resource: str, seen: Observation) -> str:
    where = f" on {seen.endpoint[0]}" if seen.endpoint else ""
    return f"{resource} started the work{where}; waiting for its interface to answer."


def _ended_reason(task: Task, seen: Observation) -> str:
    if seen.exit_code == 137 and seen.memory_kills > 0:
        return f"The program ran out of memory (limit {task.memory_mb} MiB) and was killed."
    if seen.reason:
        return seen.reason
    if seen.exit_code is None:
        return "The program ended."
    if seen.exit_code > 128 and _signal_name(seen.exit_code - 128):
        name = _signal_name(seen.exit_code - 128)
        return f"The program was killed ({name}, exit code {seen.exit_code})."
    return f"The program exited with code {seen.exit_code}."


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return ""


def _note_trouble(task_id: str, backend: str, error: ComputingError) -> None:
    task = Task.objects.select_related("resource").defer("log_tail").filter(pk=task_id).first()
    if task is not None:
        what = "Could not reach" if error.transient else "Trouble on"
        task.note(f"{what} {task.resource.name} ({backend}): {error}", error.detail)


def _owner_ssh_keys(task: Task) -> dict[str, str]:
    """An SSH task's server accepts the keys its owner has registered when it starts (the
    images' convention, images/README.md): with ``ssh -J`` through the SSH front door, the
    client authenticates to it end to end with the same key that opened the door."""
    if task.software.interface_protocol != Protocol.SSH:
        return {}
    keys = SSHKey.objects.filter(user_id=task.owner_id).values_list("public_key", flat=True)
    return {AUTHORIZED_KEYS_ENV: authorized_keys_value(list(keys))}


def _container_spec(task: Task, instance: str) -> ContainerSpec:
    """What to run: on another machine, the image copied to the platform's registry, by digest."""
    software = task.software
    image = image_for(software, task.resource)
    mounts = tuple(Mount(m.source, m.target, m.read_only) for m in task.mounts.all())
    return ContainerSpec(
        task_id=task.id,
        instance=instance,
        image=image,
        insecure_pull=from_platform_registry(image),
        port=software.interface_port,
        cpus=task.cpus,
        memory_mb=task.memory_mb,
        env={**software.environment, **task.environment, **_owner_ssh_keys(task)},
        pull=task.resource.pull_policy,
        outbound=task.resource.task_outbound,
        base_port=software.honours_base_port,
        # The resource's options as they are now, what the task asked over them: a backend shared by
        # resources of different defaults gives each task its own.
        scheduler_options={**task.resource.scheduler_options, **task.scheduler_options},
        mounts=mounts,
        id_base=task_id_base(task.owner_id) if mounts and task.resource.is_local else None,
        secret=task_secret(task.id),
    )


_IN_PLAY = Q(phase__in=ACTIVE_PHASE_NAMES) | Q(desired=Desired.DELETED.value)


def _resource_names(scopes: set[Scope]) -> list[str]:
    resources = Resource.objects.filter(pk__in={resource_id for resource_id, _ in scopes})
    return list(resources.values_list("name", flat=True))


def _tasks_on(scopes: set[Scope]) -> list[Task]:
    where = Q(pk__in=[])
    for resource_id, owner_id in scopes:
        where |= Q(resource_id=resource_id) if owner_id is None else Q(resource_id=resource_id, owner_id=owner_id)
    queryset = Task.objects.select_related("software", "resource").defer("log_tail")
    return list(queryset.filter(_IN_PLAY, where))


def _scopes_in_use() -> list[tuple[Resource, object]]:
    busy = Task.objects.filter(_IN_PLAY)
    scopes = []
    in_use = Q(enabled=True) | Q(id__in=busy.values("resource_id"))
    for resource in Resource.objects.filter(in_use).exclude(of_other_machines()):
        if not resource.per_user:
            scopes.append((resource, None))
            continue
        owners = get_user_model().objects.filter(id__in=busy.filter(resource=resource).values("owner_id"))
        scopes += [(resource, owner) for owner in owners.select_related("ssh_identity")]
    return scopes


def _refused(resource: Resource, owner, error: AccountRefused) -> None:
    """The owner's account there is one the platform will not log in to for them: their tasks
    never launched end with the reason (stopped, if that was asked), the others are told (once:
    a repeated event is dropped) and left as they are until an operator settles the name."""
    for task in Task.objects.filter(_IN_PLAY, resource=resource, owner=owner).defer("log_tail"):
        if task.is_final:
            _delete_if_requested(task.id)
        elif task.phase_enum is Phase.CREATED and not task.backend_state:
            if task.desired == Desired.RUNNING.value:
                said = error.explain(resource.name)
                task.transition(Phase.FAILED, said, detail=error.detail, cause="account_refused")
            elif task.transition(Phase.STOPPED, NEVER_LAUNCHED):
                _delete_if_requested(task.id)
        else:
            task.note(str(error), error.detail)


def _finished_or_gone(task_ids: list[str]) -> list[str]:
    active = set(Task.objects.filter(pk__in=task_ids, phase__in=ACTIVE_PHASE_NAMES).values_list("pk", flat=True))
    return [task_id for task_id in task_ids if task_id not in active]


def _delete_if_requested(task_id: str) -> None:
    with transaction.atomic():
        if Task.objects.filter(pk=task_id, desired=Desired.DELETED.value, phase__in=FINAL_PHASE_NAMES).delete()[0]:
            notify.after_commit(notify.GATEWAY)
