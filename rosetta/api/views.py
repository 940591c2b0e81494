"""The REST API (OpenAPI schema at /api/openapi.json, interactive docs at /api/docs): the API
object, its error answers and the health check. Each capability's endpoints live in their own
module (account, tasks, computing, keys, catalog, storage)."""

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection
from django.http import HttpRequest
from ninja import Swagger
from ninja.errors import AuthenticationError
from ninja.errors import ValidationError as SchemaValidationError

from rosetta.api.account import router as account_router
from rosetta.api.auth import DEACTIVATED, session_or_token
from rosetta.api.catalog import router as catalog_router
from rosetta.api.computing import router as computing_router
from rosetta.api.idempotency import InvalidKey
from rosetta.api.keys import router as keys_router
from rosetta.api.openapi import RosettaAPI
from rosetta.api.schemas import HealthOut
from rosetta.api.scopes import ScopeRefused
from rosetta.api.storage import router as storage_router
from rosetta.api.tasks import router as tasks_router
from rosetta.core import disk
from rosetta.core.errors import Conflict, NotFound
from rosetta.storage.errors import FileProblem


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


api.add_router("", account_router)
api.add_router("", tasks_router)
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


@api.exception_handler(ScopeRefused)
@api.exception_handler(PermissionDenied)
def refused(request, error):
    return api.create_response(request, {"detail": str(error) or "Refused."}, status=403)


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
