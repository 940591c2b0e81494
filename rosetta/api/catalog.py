"""The catalogue's API: browse and search it, register images, build from Containerfiles with
the log as it comes, and change, hide or retire entries (owners and staff)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from rosetta.api.idempotency import answer_once
from rosetta.api.schemas import InSchema, Message
from rosetta.catalog import services
from rosetta.computing.models import Resource

router = Router(tags=["catalogue"])

NAME = Field(..., max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Lower-case letters, digits, '-', '_'.")
VERSION = Field(
    "1", max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="e.g. 1.0 or py3.11; unique per name."
)
Interface = Literal["http", "https", "ssh", "other"]
Visibility = Literal["private", "group", "everyone"]


class RunsOn(Schema):
    resource: str
    ready: bool
    note: str = Field(..., description="Why not (yet), when it cannot run there now.")


class SoftwareOut(Schema):
    id: int
    name: str
    version: str
    reference: str = Field(..., description="NAME:VERSION, how you start it (OWNER/NAME:VERSION for another's).")
    description: str
    image: str
    image_digest: str = Field(..., description="The local image's digest when it was added or built.")
    digest: str = Field(..., description="What tasks run: the registry's digest once copied, else the local one.")
    registry_state: str = Field(..., description="pending | pushing | pushed | failed | elsewhere (rosetta.registry)")
    registry_digest: str = Field(..., description="What other machines run: the digest in the platform's registry.")
    registry_reason: str = Field(..., description="Why the copy to the platform's registry failed.")
    interface_protocol: str
    interface_port: int
    honours_base_port: bool
    own_authorization: bool
    environment: dict[str, str]
    visibility: str
    group: str | None = Field(None, alias="group.name")
    owner: str | None = Field(None, alias="owner.username")
    status: str = Field(..., description="listed | hidden (startable by NAME:VERSION only) | retired (not startable)")
    source: str = Field(..., description="image (a reference registered) | build (built here)")
    created: datetime
    runs_on: list[RunsOn] = Field(..., description="Enabled resources and whether it can run there now.")

    @staticmethod
    def resolve_runs_on(software, context) -> list[dict]:
        request = (context or {}).get("request")
        resources = getattr(request, "enabled_resources", None)
        if resources is None:  # once per request, whatever the number of entries
            resources = list(Resource.objects.filter(enabled=True))
            if request is not None:
                request.enabled_resources = resources
        return services.where_it_runs(software, resources)


OWN_AUTHORIZATION = Field(
    False,
    description="The interface does its own HTTP authentication: the client's Authorization header reaches it, "
    "and the gateway does not send the task's secret.",
)


class SoftwareIn(InSchema):
    name: str = NAME
    version: str = VERSION
    image: str = Field(..., max_length=255, description="Image reference, e.g. localhost/lab/tool:1.0")
    description: str = Field("", max_length=2000)
    interface_protocol: Interface = "http"
    interface_port: int = Field(8080, ge=1, le=65535)
    honours_base_port: bool = False
    own_authorization: bool = OWN_AUTHORIZATION
    environment: dict[str, str] = Field(default_factory=dict)
    visibility: Visibility = "private"
    group: str | None = Field(None, max_length=150, description="The group that sees it (visibility group).")


class SoftwarePatch(InSchema):
    description: str | None = Field(None, max_length=2000)
    interface_protocol: Interface | None = None
    interface_port: int | None = Field(None, ge=1, le=65535)
    honours_base_port: bool | None = None
    own_authorization: bool | None = None
    environment: dict[str, str] | None = None
    visibility: Visibility | None = None
    group: str | None = Field(None, max_length=150)
    status: Literal["listed", "hidden", "retired"] | None = Field(
        None, description="hidden: off the catalogue, still startable by NAME:VERSION; retired: not startable."
    )


class BuildIn(InSchema):
    name: str = NAME
    version: str = VERSION
    containerfile: str = Field(..., max_length=65536, description="The Containerfile's text (the whole build context).")
    description: str = Field("", max_length=2000)
    interface_protocol: Interface = "http"
    interface_port: int = Field(8080, ge=1, le=65535)
    honours_base_port: bool = False
    own_authorization: bool = OWN_AUTHORIZATION
    environment: dict[str, str] = Field(default_factory=dict)
    visibility: Visibility = "private"
    group: str | None = Field(None, max_length=150)


class BuildOut(Schema):
    id: int
    name: str
    version: str
    owner: str = Field(..., alias="owner.username")
    state: str = Field(..., description="queued | building | succeeded | failed")
    reason: str = Field(..., description="Why it failed, in plain words.")
    image: str
    software: int | None = Field(None, description="The entry it added, once it succeeded.", alias="software_id")
    queue_position: int = Field(..., description="Builds before this one while it is queued.")
    created: datetime
    started: datetime | None
    finished: datetime | None
    log: str = Field(..., description="The log from `offset` on.")
    next_offset: int = Field(..., description="Ask again with offset=next_offset for what came since.")

    @staticmethod
    def resolve_queue_position(build) -> int:
        return services.queue_position(build)

    @staticmethod
    def resolve_log(build, context) -> str:
        request = (context or {}).get("request")
        offset = request.GET.get("offset", "0") if request is not None and request.method == "GET" else "0"
        return build.log[int(offset) if offset.isdigit() else 0 :]

    @staticmethod
    def resolve_next_offset(build) -> int:
        return len(build.log)


@router.get("/software", response=list[SoftwareOut])
def list_software(
    request: HttpRequest,
    q: str = "",
    interface: Interface | None = None,
    resource: str = "",
    owner: str = "",
    include_hidden: bool = False,
    include_retired: bool = False,
    all_owners: bool = False,
):
    """The catalogue as you see it: your own entries, your groups', everyone's. Search words
    (`q`) match the name, description or image; `resource` keeps what can run there now;
    `owner=mine` keeps your own. Staff: `all_owners` shows every user's entries, `include_hidden` hidden ones."""
    filters = services.Filters(
        text=q[:200],
        interface=interface or "",
        resource=resource,
        owner=owner,
        include_hidden=include_hidden,
        include_retired=include_retired,
    )
    return services.search(request.auth, filters, managing=all_owners)


@router.post("/software", response={201: SoftwareOut, 400: Message, 403: Message, 409: Message})
def add_software(request: HttpRequest, payload: SoftwareIn):
    """Register an image as your own entry NAME:VERSION (private unless shared: a group you are
    in, or everyone for staff). Names are yours: another user's entry of the same name is another entry."""
    return _made_once(request, 201, SoftwareOut, lambda: services.add_software(request.auth, **payload.dict()))


@router.get("/software/resolve", response={200: SoftwareOut, 404: Message})
def resolve_software(request: HttpRequest, reference: str, manage: bool = False):
    """Which entry `[OWNER/]NAME[:VERSION]` names for you: your own first, then the platform's,
    then one another user shares with you; without a version, the newest listed. `manage`
    finds retired entries too (and, for staff, every user's)."""
    return services.resolve(request.auth, reference, managing=manage)


@router.get("/software/builds", response=list[BuildOut])
def list_builds(request: HttpRequest):
    """Your builds, newest first (staff: everyone's). Logs are left out here."""
    builds = list(services.builds_of(request.auth).defer("containerfile")[:100])
    for build in builds:
        build.log = ""  # GET /software/builds/ID has it
    return builds


@router.post("/software/builds", response={202: BuildOut, 400: Message, 403: Message, 409: Message})
def start_build(request: HttpRequest, payload: BuildIn):
    """Build an image from a Containerfile (its only file: nothing else is in the build context)
    and add it as your entry NAME:VERSION once it builds. Follow it with GET /software/builds/ID."""
    return _made_once(request, 202, BuildOut, lambda: services.request_build(request.auth, **payload.dict()))


@router.get("/software/builds/{build_id}", response={200: BuildOut, 404: Message})
def get_build(request: HttpRequest, build_id: int, offset: int = 0):
    """A build's state and its log from `offset` on (poll with the `next_offset` it gives)."""
    return services.get_build(request.auth, build_id)


@router.get(
    "/software/builds/{build_id}/containerfile",
    response={200: None, 404: Message},
    openapi_extra={"responses": {200: {"description": "The Containerfile.", "content": {"text/plain": {}}}}},
)
def get_containerfile(request: HttpRequest, build_id: int):
    """The Containerfile a build was made from, as text."""
    from django.http import HttpResponse

    build = services.get_build(request.auth, build_id)
    return HttpResponse(build.containerfile, content_type="text/plain; charset=utf-8")


@router.get("/software/{software_id}", response={200: SoftwareOut, 404: Message})
def get_software(request: HttpRequest, software_id: int):
    return services.get_entry(request.auth, software_id, managing=True)


@router.patch("/software/{software_id}", response={200: SoftwareOut, 400: Message, 403: Message, 404: Message})
def change_software(request: HttpRequest, software_id: int, payload: SoftwarePatch):
    """Change an entry's description, interface, environment or sharing, hide it, retire it or
    list it again (owner or staff). Its image never changes: tasks keep what they ran."""
    software = services.get_entry(request.auth, software_id, managing=True)
    # A field sent as null is left as it is, like one not sent.
    changes = {field: value for field, value in payload.dict(exclude_unset=True).items() if value is not None}
    try:
        return services.edit_software(request.auth, software, changes)
    except services.Forbidden as error:
        return 403, {"detail": str(error)}


def _made_once(request: HttpRequest, status: int, schema, make):
    """``make()`` the object once per Idempotency-Key and answer it as ``schema`` with ``status``;
    403 when the user may not."""

    def answer():
        try:
            made = make()
        except services.Forbidden as error:
            return 403, {"detail": str(error)}
        return status, schema.from_orm(made).model_dump(mode="json")

    return answer_once(request, answer)
