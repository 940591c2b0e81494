"""Under /api/ every answer is JSON: a 404 for a path that does not exist, a 405, a CSRF
refusal or a server error are turned from Django's HTML pages into {"detail": ...}."""

from __future__ import annotations

from http import HTTPStatus

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import sync_and_async_middleware

API_PREFIX = "/api/"
_SAID = {
    404: "There is no such API endpoint; see /api/docs.",
    405: "This endpoint does not take that method; see /api/docs.",
    500: "Rosetta met an internal error; it has been logged.",
}


def _as_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if (
        response.status_code < 400
        or not request.path.startswith(API_PREFIX)
        or response.get("Content-Type", "").startswith("application/json")
        or getattr(response, "streaming", False)
    ):
        return response
    status = response.status_code
    detail = _SAID.get(status) or HTTPStatus(status).phrase
    if status == 403 and b"CSRF" in response.content:
        detail = "CSRF check failed: send the X-CSRFToken header with the session, or use an API token."
    answer = JsonResponse({"detail": detail}, status=status)
    for header in ("Allow", "Retry-After", "WWW-Authenticate"):
        if header in response:
            answer[header] = response[header]
    return answer


@sync_and_async_middleware
def json_errors_under_api(get_response):
    if iscoroutinefunction(get_response):

        async def middleware(request):
            return _as_json(request, await get_response(request))

    else:

        def middleware(request):
            return _as_json(request, get_response(request))

    return middleware
