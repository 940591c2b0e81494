"""The schema tells the truth about errors: every operation lists the error statuses the
platform's own handlers can give it (rosetta.api.views), so clients and schemathesis can rely
on them. Each is JSON: {"detail": "..."} (422 adds "errors")."""

from __future__ import annotations

from ninja import NinjaAPI

MESSAGE = {"$ref": "#/components/schemas/Message"}
PAGE = {"type": "string"}
INVALID = {
    "title": "InvalidRequest",
    "type": "object",
    "properties": {"detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}},
    "required": ["detail"],
}
UNSAFE = {"post", "put", "patch", "delete"}


def _common_errors(method: str, path: str, operation: dict) -> dict[str, tuple[str, dict]]:
    errors: dict[str, tuple[str, dict]] = {}
    if operation.get("security"):
        errors["401"] = ("Not authenticated: no session, or an API token that is invalid, expired or revoked.", MESSAGE)
    if method in UNSAFE:
        errors["403"] = ("Refused: the browser session's CSRF check failed, or this needs staff.", MESSAGE)
    if "{" in path:
        errors["404"] = ("No such object, or not one of yours.", MESSAGE)
    if method == "post":
        errors["400"] = ("The request cannot be carried out as asked (the detail says why).", MESSAGE)
        errors["409"] = ("A clash with what exists, or an Idempotency-Key reused for another request.", MESSAGE)
    # The gateway's own answer, on any route, to a request head over 64 KiB: a page, not JSON
    # (the gateway refuses it before knowing what it asks for).
    errors["431"] = ("The request's head (its headers) is over 64 KiB: the gateway refuses it.", PAGE)
    if operation.get("parameters") or operation.get("requestBody"):
        errors["422"] = ("The request does not match this schema (the errors say where).", INVALID)
    return errors


class RosettaAPI(NinjaAPI):
    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("Message", {
            "title": "Message", "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]
        })  # fmt: skip
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                for status, (description, body) in _common_errors(method, path, operation).items():
                    if status not in responses and int(status) not in responses:
                        media = "text/html" if body is PAGE else "application/json"
                        responses[status] = {"description": description, "content": {media: {"schema": body}}}
        return schema
