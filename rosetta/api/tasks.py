"""The API of tasks: start, list, follow, stop, relaunch and delete them; their events, output
and what stopping one would lose."""

import dataclasses
from typing import Literal

from asgiref.sync import sync_to_async
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Router
from ninja.pagination import paginate

from rosetta.api.idempotency import answer_once
from rosetta.api.pagination import KeysetPagination
from rosetta.api.schemas import EventOut, Message, ScratchOut, StopIn, TaskDetailOut, TaskIn, TaskOut
from rosetta.tasks import records, rerun, services
from rosetta.tasks.logs import stream_logs
from rosetta.tasks.phases import Phase
from rosetta.tasks.scratch import scratch_of

router = Router(tags=["tasks"])


PhaseFilter = Literal["all", "active", "finished", *sorted(phase.value for phase in Phase)]


@router.get("/tasks", response=list[TaskOut])
@paginate(KeysetPagination)
def list_tasks(request: HttpRequest, phase: PhaseFilter = "all"):
    """Your tasks, newest first (staff: everyone's). `phase`: `active`, `finished`, one phase, or `all`.

    A page at a time: `limit` tasks (default 50, at most 500). While `next` is not null, GET it (or send
    `next_cursor` as `cursor`) for older ones: tasks created meanwhile are never listed twice or skipped.
    The list leaves out what only a task's own answer needs (events, environment, mounts): GET /tasks/{task}."""
    return services.filter_by_phase(services.task_list_of(request.auth), phase)


@router.post("/tasks", response={201: TaskDetailOut, 400: Message, 404: Message, 409: Message})
def start_task(request: HttpRequest, payload: TaskIn):
    """Start a task. Send an `Idempotency-Key` header to make retries safe: a repeated request
    with the same key answers with the task the first one created."""

    def start():
        if payload.from_record is not None:
            task = rerun.start_from_record(request.auth, payload.from_record, on=payload.resource)
        else:
            task = services.start_task(request.auth, services.TaskRequest(**payload.request_fields()))
        return 201, TaskDetailOut.from_orm(task).model_dump(mode="json")

    return answer_once(request, start)


@router.get("/tasks/{task_id}", response=TaskDetailOut)
def get_task(request: HttpRequest, task_id: str):
    return services.get_task(request.auth, task_id)


@router.post("/tasks/{task_id}/relaunch", response={201: TaskDetailOut, 404: Message, 409: Message})
def relaunch_task(request: HttpRequest, task_id: str):
    """Start a finished task's request again (software, resource, size, environment, name)."""

    def relaunch():
        task = services.relaunch(request.auth, services.get_task(request.auth, task_id))
        return 201, TaskDetailOut.from_orm(services.get_task(request.auth, task.id)).model_dump(mode="json")

    return answer_once(request, relaunch)


@router.get("/tasks/{task_id}/record", response={200: dict, 404: Message})
def task_record(request: HttpRequest, task_id: str):
    """What the task ran, as one document: software (name, version, image digest; for a built image
    its Containerfile and FROM images), resource and kind, the request (CPUs, memory, batch options,
    environment with secret values left out, storages and mount points), interface, times, outcome and
    Rosetta's version. Kept after the task is deleted from the list (by id, or its latest name)."""
    return 200, records.record_for(request.auth, task_id)


@router.get("/tasks/{task_id}/events", response=list[EventOut])
def task_events(request: HttpRequest, task_id: str):
    return services.get_task(request.auth, task_id).events.all()


@router.get("/tasks/{task_id}/scratch", response={200: ScratchOut, 404: Message})
async def task_scratch(request: HttpRequest, task_id: str):
    """What stopping the task would lose. When no storage is its home, the home is scratch space:
    the platform looks into the running container and counts the files there (hidden ones left
    out), or says plainly when it cannot look (a batch job on a compute node). A home that is a
    storage loses nothing: `home_storage` names it."""
    task = await sync_to_async(services.get_task)(request.auth, task_id)
    return dataclasses.asdict(await scratch_of(task))


@router.post("/tasks/{task_id}/stop", response={202: TaskOut, 400: Message})
def stop_task(request: HttpRequest, task_id: str, payload: StopIn | None = None):
    """Stop a task. Staff stopping another user's task say why (`reason`): its owner sees it."""
    task = services.get_task(request.auth, task_id)
    services.request_stop(task, by=request.auth, reason=payload.reason if payload else "")
    return 202, task


@router.delete("/tasks/{task_id}", response={202: Message})
def delete_task(request: HttpRequest, task_id: str):
    task = services.get_task(request.auth, task_id)
    services.request_delete(task)
    return 202, {"detail": f"Task {task.id} is being deleted."}


@router.get(
    "/tasks/{task_id}/logs",
    response={200: None, 404: Message},
    openapi_extra={
        "responses": {
            200: {
                "description": "The task's output as plain text, streamed when follow=true.",
                "content": {"text/plain": {}},
            }
        }
    },
)
async def task_logs(request: HttpRequest, task_id: str, follow: bool = False, tail: int | None = None):
    task = await sync_to_async(services.get_task)(request.auth, task_id)
    return StreamingHttpResponse(
        stream_logs(task, follow=follow, tail=tail),
        content_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
