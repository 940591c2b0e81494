"""The REST API (OpenAPI schema at /api/openapi.json, interactive docs at /api/docs)."""

import dataclasses
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Swagger
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as SchemaValidationError
from ninja.pagination import paginate

from rosetta.accounts import services as account_services
from rosetta.api.auth import DEACTIVATED, session_or_token
from rosetta.api.catalog import router as catalog_router
from rosetta.api.computing import router as computing_router
from rosetta.api.idempotency import InvalidKey, answer_once
from rosetta.api.keys import router as keys_router
from rosetta.api.openapi import RosettaAPI
from rosetta.api.pagination import KeysetPagination
from rosetta.api.schemas import (
    EventOut,
    HealthOut,
    Message,
    ScratchOut,
    StopIn,
    TaskDetailOut,
    TaskIn,
    TaskOut,
    TokenIn,
    TokenOut,
    UserOut,
)
from rosetta.api.storage import router as storage_router
from rosetta.core import disk
from rosetta.core.errors import Conflict, NotFound
from rosetta.storage.errors import FileProblem
from rosetta.tasks import services
from rosetta.tasks.logs import stream_logs
from rosetta.tasks.phases import Phase
from rosetta.tasks.scratch import scratch_of


class RosettaDocs(Swagger):
    """Swagger UI from local files, inside Rosetta's own page (with the way back to the app)."""

    template = "web/api_docs.html"


api = RosettaAPI(
    title="Rosetta",
    version="1",
    auth=session_or_token,
    urls_namespace="api",
    docs=RosettaDocs(),
    description=(
        "Run analysis environments as containers on computing resources, and reach them through the gateway. "
        "Authenticate with `Authorization: Bearer <API token>` (tokens: the Account page, or `POST /api/tokens`) "
        'or the browser session. Every error is JSON: `{"detail": "..."}`. A task is addressed by its id '
        "or by its name among your tasks."
    ),
)


api.add_router("", computing_router)
api.add_router("", keys_router)
api.add_router("", catalog_router)
api.add_router("", storage_router)


@api.exception_handler(DatabaseError)
@api.exception_handler(OSError)
def disk_full(request, error):
    if not disk.is_disk_full(error):
        raise error
    return disk.answer(request)


@api.get("/health", auth=None, response={200: HealthOut, 503: HealthOut}, tags=["platform"])
def health(request: HttpRequest):
    """Whether the platform can work: its database answers and its disk has room (no login needed)."""
    free = disk.free_bytes()
    problems = []
    if free < disk.NEARLY_FULL:
        problems.append(f"The platform's disk is full ({free // 1024} KiB free): changes cannot be recorded.")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        problems.append(f"The database does not answer: {error}")
    status = 503 if problems else 200
    return status, {"status": "ok" if not problems else "degraded", "disk_free_bytes": free, "problems": problems}


@api.exception_handler(NotFound)
def not_found(request, error):
    return api.create_response(request, {"detail": str(error)}, status=404)


@api.exception_handler(Conflict)
def conflict(request, error):
    return api.create_response(request, {"detail": str(error)}, status=409)


@api.exception_handler(FileProblem)
def file_problem(request, error):
    return api.create_response(request, {"detail": str(error)}, status=error.status)


@api.exception_handler(InvalidKey)
def invalid_key(request, error):
    return api.create_response(request, {"detail": str(error)}, status=400)


@api.exception_handler(ValidationError)
def invalid(request, error):
    return api.create_response(request, {"detail": " ".join(error.messages)}, status=400)


@api.exception_handler(SchemaValidationError)
def invalid_schema(request, error):
    problems = "; ".join(f"{_where(e.get('loc', ()))}: {_problem(e)}" for e in error.errors)
    return api.create_response(request, {"detail": f"Invalid request: {problems}", "errors": error.errors}, status=422)


def _where(loc) -> str:
    """The field as the client wrote it: ('body', PARAMETER, 'cpus') is cpus, ('query', 'phase') is phase."""
    field = loc[2:] if tuple(loc[:1]) == ("body",) else loc[1:]
    return ".".join(str(part) for part in field) or "body"


def _problem(error: dict) -> str:
    if error.get("type") == "extra_forbidden":
        return "not a field this request takes (see /api/docs)"
    return str(error.get("msg"))


@api.exception_handler(AuthenticationError)
def unauthenticated(request, error):
    if getattr(request, "rosetta_token_refusal", "") == DEACTIVATED:
        detail = "This account is deactivated: ask the platform's staff to reactivate it."
    elif request.headers.get("Authorization", "").lower().startswith("bearer "):
        detail = (
            "This API token is invalid, expired or revoked. Create a new one on your Account page "
            f"({settings.PUBLIC_URL}/account/) and run `rosetta login`."
        )
    else:
        detail = "Log in, or send 'Authorization: Bearer <API token>'."
    return api.create_response(request, {"detail": detail}, status=401)


@api.get("/me", response=UserOut, tags=["account"])
def me(request: HttpRequest):
    return request.auth


@api.post("/tokens", response={201: TokenOut, 409: Message}, tags=["account"])
def create_token(request: HttpRequest, payload: TokenIn):
    def create():
        token, secret = account_services.create_token(request.auth, payload.name, payload.expires_in_days)
        expires = token.expires.isoformat() if token.expires else None
        return 201, {"name": payload.name, "token": secret, "expires": expires}

    return answer_once(request, create, replayable=False)


PhaseFilter = Literal["all", "active", "finished", *sorted(phase.value for phase in Phase)]


@api.get("/tasks", response=list[TaskOut], tags=["tasks"])
@paginate(KeysetPagination)
def list_tasks(request: HttpRequest, phase: PhaseFilter = "all"):
    """Your tasks, newest first (staff: everyone's). `phase`: `active`, `finished`, one phase, or `all`.

    A page at a time: `limit` tasks (default 50, at most 500). While `next` is not null, GET it (or send
    `next_cursor` as `cursor`) for older ones: tasks created meanwhile are never listed twice or skipped.
    The list leaves out what only a task's own answer needs (events, environment, mounts): GET /tasks/{task}."""
    return services.filter_by_phase(services.task_list_of(request.auth), phase)


@api.post("/tasks", response={201: TaskDetailOut, 400: Message, 404: Message, 409: Message}, tags=["tasks"])
def start_task(request: HttpRequest, payload: TaskIn):
    """Start a task. Send an `Idempotency-Key` header to make retries safe: a repeated request
    with the same key answers with the task the first one created."""

    def start():
        task = services.start_task(request.auth, services.TaskRequest(**payload.request_fields()))
        return 201, TaskDetailOut.from_orm(task).model_dump(mode="json")

    return answer_once(request, start)


@api.get("/tasks/{task_id}", response=TaskDetailOut, tags=["tasks"])
def get_task(request: HttpRequest, task_id: str):
    return services.get_task(request.auth, task_id)


@api.post("/tasks/{task_id}/relaunch", response={201: TaskDetailOut, 404: Message, 409: Message}, tags=["tasks"])
def relaunch_task(request: HttpRequest, task_id: str):
    """Start a finished task's request again (software, resource, size, environment, name)."""

    def relaunch():
        task = services.relaunch(request.auth, services.get_task(request.auth, task_id))
        return 201, TaskDetailOut.from_orm(services.get_task(request.auth, task.id)).model_dump(mode="json")

    return answer_once(request, relaunch)


@api.get("/tasks/{task_id}/events", response=list[EventOut], tags=["tasks"])
def task_events(request: HttpRequest, task_id: str):
    return services.get_task(request.auth, task_id).events.all()


@api.get("/tasks/{task_id}/scratch", response={200: ScratchOut, 404: Message}, tags=["tasks"])
async def task_scratch(request: HttpRequest, task_id: str):
    """What stopping the task would lose. When no storage is its home, the home is scratch space:
    the platform looks into the running container and counts the files there (hidden ones left
    out), or says plainly when it cannot look (a batch job on a compute node). A home that is a
    storage loses nothing: `home_storage` names it."""
    task = await sync_to_async(services.get_task)(request.auth, task_id)
    return dataclasses.asdict(await scratch_of(task))


@api.post("/tasks/{task_id}/stop", response={202: TaskOut, 400: Message}, tags=["tasks"])
def stop_task(request: HttpRequest, task_id: str, payload: StopIn | None = None):
    """Stop a task. Staff stopping another user's task say why (`reason`): its owner sees it."""
    task = services.get_task(request.auth, task_id)
    services.request_stop(task, by=request.auth, reason=payload.reason if payload else "")
    return 202, task


@api.delete("/tasks/{task_id}", response={202: Message}, tags=["tasks"])
def delete_task(request: HttpRequest, task_id: str):
    task = services.get_task(request.auth, task_id)
    services.request_delete(task)
    return 202, {"detail": f"Task {task.id} is being deleted."}


@api.get(
    "/tasks/{task_id}/logs",
    tags=["tasks"],
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
