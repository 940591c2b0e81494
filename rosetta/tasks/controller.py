"""The controller: the only writer of tasks' actual state.

Level-triggered: each pass reads every active task from the database and every container
of this instance from each resource, decides per task what to do (rosetta.tasks.phases.decide)
and does it. It keeps nothing that matters in memory: killed and restarted, it finds the
containers by their labels and carries on. A pass runs every second, and at once when the
API signals a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from rosetta.computing.backends import scheduler_for
from rosetta.computing.engines.base import ContainerSpec, ContainerStatus
from rosetta.computing.errors import ComputingError
from rosetta.computing.models import Resource
from rosetta.computing.schedulers.base import Scheduler
from rosetta.core import notify
from rosetta.core.instance import instance_id
from rosetta.tasks.models import MAX_LOG_TAIL, Task
from rosetta.tasks.phases import ACTIVE_PHASES, Act, Desired, Phase, TaskView, Timeouts, decide
from rosetta.tasks.probe import interface_answers

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
PROBE_WINDOW = 2.0
LOG_TAIL_LINES = 5000
db = sync_to_async  # all ORM work runs in Django's one sync thread
TIMEOUTS = Timeouts(start=settings.TASK_START_TIMEOUT, stop=settings.TASK_STOP_TIMEOUT)


class Controller:
    def __init__(self, poll_interval: float = POLL_INTERVAL) -> None:
        self.poll_interval = poll_interval
        self.instance = instance_id()
        self.jobs: dict[str, asyncio.Task] = {}
        self.listener = notify.Listener(notify.CONTROLLER)

    async def run_forever(self) -> None:
        self.listener.start()
        log.info("controller started (instance %s)", self.instance)
        try:
            while True:
                try:
                    await self.reconcile()
                except Exception:  # one bad pass must not end the controller
                    log.exception("reconcile pass failed")
                await self.listener.wait(self.poll_interval)
        finally:
            self.listener.close()
            for job in self.jobs.values():
                job.cancel()

    async def reconcile(self) -> None:
        tasks = await db(_tasks_to_reconcile)()
        polls = await self._poll(tasks)
        containers = {resource_id: statuses for _, resource_ids, statuses in polls for resource_id in resource_ids}
        for task in tasks:
            if task.id in self.jobs:
                continue
            observed = containers.get(task.resource_id)
            if observed is None:
                continue  # the resource did not answer: decide nothing rather than guess
            view = TaskView(task.phase_enum, Desired(task.desired), (timezone.now() - task.phase_since).total_seconds())
            container = observed.get(task.id)
            act = decide(view, container, TIMEOUTS)
            if act is not Act.NOTHING:
                self._spawn(task.id, self._act(act, task, container))
            elif task.endpoint_port and container and container.host_port != task.endpoint_port:
                self._spawn(task.id, self._update_endpoint(task, container))
        known = {task.id for task in tasks} | set(self.jobs)
        for scheduler, _, statuses in polls:
            strays = [task_id for task_id in statuses if task_id not in known]
            if strays:
                await self._clean_up_strays(scheduler, strays)

    async def _poll(self, tasks: list[Task]) -> list[tuple[Scheduler, list[int], dict[str, ContainerStatus]]]:
        """Each distinct scheduler polled once: (scheduler, its resource ids, containers by task id).
        A scheduler that fails to answer is left out."""
        by_scheduler: dict[Scheduler, list[int]] = {}
        resources = {task.resource_id: task.resource for task in tasks}
        resources.update({resource.id: resource for resource in await db(_enabled_resources)()})
        for resource in resources.values():
            by_scheduler.setdefault(scheduler_for(resource), []).append(resource.id)
        polls = []
        for scheduler, resource_ids in by_scheduler.items():
            try:
                polls.append((scheduler, resource_ids, await scheduler.poll(self.instance)))
            except ComputingError as error:
                log.warning("cannot poll resources %s: %s", resource_ids, error)
        return polls

    def _spawn(self, task_id: str, work) -> None:
        job = asyncio.create_task(work)
        self.jobs[task_id] = job
        job.add_done_callback(lambda _: self.jobs.pop(task_id, None))

    async def _act(self, act: Act, task: Task, container: ContainerStatus | None) -> None:
        scheduler = scheduler_for(task.resource)
        try:
            match act:
                case Act.START:
                    await self._start(task, scheduler)
                case Act.ADOPT:
                    await self._record(task, Phase.STARTING, "Found the task's container after a controller restart.",
                                       **_endpoint_fields(scheduler, container))
                    await self._wait_for_interface(task)
                case Act.PROBE:
                    if not task.endpoint_port and container and container.host_port:
                        await self._update_endpoint(task, container)
                    await self._wait_for_interface(task)
                case Act.STOP:
                    await self._stop(task, scheduler, container)
                case Act.CANCEL:
                    await self._record(task, Phase.STOPPED, "Stopped before its container was launched.")
                    await self._forget_if_deleted(task)
                case Act.ENDED:
                    log_tail = await self._log_tail(scheduler, task)
                    await scheduler.stop(task.id, grace_seconds=0)
                    reason = f"The program exited with code {container.exit_code}."
                    await self._record(task, Phase.EXITED, reason, exit_code=container.exit_code, log_tail=log_tail)
                case Act.VANISHED:
                    await self._record(task, Phase.EXITED, "The container is gone: it was removed outside Rosetta "
                                       "or the machine restarted.")
                case Act.TIMED_OUT:
                    log_tail = await self._log_tail(scheduler, task)
                    await scheduler.stop(task.id, grace_seconds=2)
                    reason = f"The interface did not answer within {settings.TASK_START_TIMEOUT:g} s; the container was removed."
                    await self._record(task, Phase.FAILED, reason, log_tail=log_tail)
                case Act.STOP_TIMED_OUT:
                    reason = (f"The container could not be removed within {settings.TASK_STOP_TIMEOUT:g} s; "
                              "Rosetta keeps trying in the background.")
                    await self._record(task, Phase.FAILED, reason)
                case Act.CLEAN_UP:
                    await scheduler.stop(task.id, grace_seconds=0)
                case Act.FORGET:
                    await self._forget_if_deleted(task)
        except ComputingError as error:
            await db(task.note)(f"{task.resource.name} said: {error}")
        except Exception:
            log.exception("acting %s on task %s failed", act.value, task.id)

    async def _start(self, task: Task, scheduler: Scheduler) -> None:
        spec = await db(_container_spec)(task, self.instance)
        await db(task.note)(f"Launching the container from {spec.image} on {task.resource.name}.")
        try:
            await scheduler.start(spec)
        except ComputingError as error:
            await self._record(task, Phase.FAILED, f"The container could not be started: {error}")
            return
        status = (await scheduler.poll(self.instance)).get(task.id)
        if status is None:
            await self._record(task, Phase.EXITED, "The container ended as soon as it started.")
            return
        await self._record(task, Phase.STARTING, "The container is up; waiting for its interface to answer.",
                           image_id=status.image_id, **_endpoint_fields(scheduler, status))
        await self._wait_for_interface(task)

    async def _wait_for_interface(self, task: Task) -> None:
        """Probe quickly (most interfaces come up in well under a second), for a short window
        only: the job blocks this task's reconciliation, and the next pass must still see a
        container that ended meanwhile. Later passes probe again until the start timeout."""
        if not task.endpoint_port:
            return
        window_ends = time.monotonic() + PROBE_WINDOW
        delay = 0.02
        protocol = task.software.interface_protocol
        while time.monotonic() < window_ends:
            if await interface_answers(task.endpoint_host, task.endpoint_port, protocol):
                await self._record(task, Phase.RUNNING, f"The interface answers ({protocol}).")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def _stop(self, task: Task, scheduler: Scheduler, container: ContainerStatus | None) -> None:
        if task.phase_enum is not Phase.STOPPING:
            await self._record(task, Phase.STOPPING, "Stopping, as requested.")
        log_tail = await self._log_tail(scheduler, task) if container else task.log_tail
        await scheduler.stop(task.id, grace_seconds=int(min(settings.TASK_STOP_TIMEOUT, 10)))
        await self._record(task, Phase.STOPPED, "The container was stopped and removed.", log_tail=log_tail)
        await self._forget_if_deleted(task)

    async def _log_tail(self, scheduler: Scheduler, task: Task) -> str:
        chunks = []
        with contextlib.suppress(ComputingError):
            async for chunk in scheduler.logs(task.id, follow=False, tail=LOG_TAIL_LINES):
                chunks.append(chunk)
        return b"".join(chunks)[-MAX_LOG_TAIL:].decode(errors="replace")

    async def _update_endpoint(self, task: Task, status: ContainerStatus) -> None:
        fields = _endpoint_fields(scheduler_for(task.resource), status)
        await db(_save_fields)(task, fields)
        notify.notify(notify.GATEWAY)

    async def _record(self, task: Task, phase: Phase, reason: str, **fields) -> None:
        await db(task.record)(phase, reason, **fields)
        log.info("task %s: %s (%s)", task.id, phase.value, reason)
        notify.notify(notify.GATEWAY)

    async def _forget_if_deleted(self, task: Task) -> None:
        if await db(_delete_if_requested)(task.id):
            notify.notify(notify.GATEWAY)

    async def _clean_up_strays(self, scheduler: Scheduler, task_ids: list[str]) -> None:
        """Remove containers whose task is finished or no longer exists (deleted meanwhile)."""
        active = await db(_active_task_ids)(task_ids)
        for task_id in task_ids:
            if task_id not in active:
                self._spawn(task_id, _remove_quietly(scheduler, task_id))


async def _remove_quietly(scheduler: Scheduler, task_id: str) -> None:
    try:
        await scheduler.stop(task_id, grace_seconds=0)
        log.info("removed stray container of task %s", task_id)
    except ComputingError as error:
        log.warning("cannot remove stray container of task %s: %s", task_id, error)


def _endpoint_fields(scheduler: Scheduler, status: ContainerStatus | None) -> dict:
    if status is None or status.host_port is None:
        return {}
    host, port = scheduler.transport.reach("127.0.0.1", status.host_port)
    return {"endpoint_host": host, "endpoint_port": port}


def _tasks_to_reconcile() -> list[Task]:
    active = [phase.value for phase in ACTIVE_PHASES]
    queryset = Task.objects.select_related("software", "resource")
    return list(queryset.filter(phase__in=active) | queryset.filter(desired=Desired.DELETED.value))


def _enabled_resources() -> list[Resource]:
    return list(Resource.objects.filter(enabled=True))


def _container_spec(task: Task, instance: str) -> ContainerSpec:
    software = task.software
    env = {**software.environment, **task.environment}
    if software.honours_base_port:
        env["BASE_PORT"] = str(software.interface_port)
    return ContainerSpec(task_id=task.id, instance=instance, image=software.image, port=software.interface_port,
                         cpus=task.cpus, memory_mb=task.memory_mb, env=env, pull=task.resource.pull_policy)


def _save_fields(task: Task, fields: dict) -> None:
    for name, value in fields.items():
        setattr(task, name, value)
    Task.objects.filter(pk=task.pk).update(**fields)


def _delete_if_requested(task_id: str) -> bool:
    deleted, _ = Task.objects.filter(pk=task_id, desired=Desired.DELETED.value,
                                     phase__in=[p.value for p in Phase if p.is_final]).delete()
    return bool(deleted)


def _active_task_ids(task_ids: list[str]) -> set[str]:
    active = [phase.value for phase in ACTIVE_PHASES]
    return set(Task.objects.filter(pk__in=task_ids, phase__in=active).values_list("pk", flat=True))
