"""The API of computing resources: everyone sees where tasks may run and within which limits;
staff add, change and check resources. Each user's own SSH key for resources where users run
as their own accounts is here too."""

from __future__ import annotations

import dataclasses
from typing import Literal

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from rosetta.api.schemas import InSchema, Message
from rosetta.computing import kinds, remote_names, services
from rosetta.computing.models import Resource, SSHIdentity
from rosetta.core.errors import NotFound

router = Router(tags=["computing"])


class PartitionOut(Schema):
    name: str
    default: bool
    max_minutes: int | None
    cpus_per_node: int
    memory_mb_per_node: int
    nodes: int
    up: bool


class ResourceOut(Schema):
    name: str
    description: str
    kind: str
    transport: str
    scheduler: str
    engine: str
    max_cpus: float
    max_memory_mb: int
    enabled: bool
    partition: str = Field(..., description="The partition tasks get when they name none (batch schedulers).")
    time_limit_minutes: int = Field(..., description="The time limit tasks get when they name none (batch schedulers).")
    scheduler_options: dict = Field(..., description="The scheduler kind's options: the defaults of tasks there.")
    partitions: list[PartitionOut] = Field(..., description="What the last check found (Slurm).")
    per_user: bool = Field(..., description="Tasks run as their owner's own account there (see /me/ssh-key).")
    default: bool = Field(..., description="Where tasks that name no resource run.")
    quotas: list[str] = Field(
        ..., description='Your quotas there with what you use now ("2 of 4 tasks, 3 of 8 CPUs (quota of …)").'
    )

    @staticmethod
    def resolve_quotas(resource, context) -> list[str]:
        from rosetta.tasks.quotas import standing

        return standing(context["request"].auth, resource)

    @staticmethod
    def resolve_default(resource) -> bool:
        from rosetta.tasks.services import default_resource

        default = default_resource()
        return default is not None and default.pk == resource.pk

    @staticmethod
    def resolve_partition(resource) -> str:
        return resource.scheduler_options.get("partition", "")

    @staticmethod
    def resolve_time_limit_minutes(resource) -> int:
        return resource.scheduler_options.get("time_limit_minutes", 0)

    @staticmethod
    def resolve_partitions(resource) -> list:
        return resource.facts.get("partitions", [])


class ResourceDetailOut(ResourceOut):
    host: str
    port: int
    username: str
    credentials: str
    work_dir: str
    task_outbound: bool
    pull_policy: str
    transport_options: dict
    engine_options: dict
    host_keys: list[str]
    facts: dict

    @staticmethod
    def resolve_host_keys(resource) -> list[str]:
        return resource.host_keys.splitlines()


class ResourceIn(InSchema):
    name: str = Field(..., max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = Field("", max_length=2000)
    # Kinds by name (built-in or installed plug-ins: GET /kinds), each with its options.
    transport: str = Field("local", max_length=16)
    scheduler: str = Field("none", max_length=16)
    engine: str = Field("podman", max_length=16)
    transport_options: dict | None = Field(None, description="The transport kind's options.")
    scheduler_options: dict | None = Field(None, description="The scheduler kind's options (Slurm: partition...).")
    engine_options: dict | None = Field(None, description="The engine kind's options.")
    host: str = Field("", max_length=255)
    port: int = Field(22, ge=1, le=65535)
    credentials: Literal["service", "user"] = "service"
    username: str = Field("", max_length=64)
    private_key: str = Field("", max_length=16384, description="The service account's private key (never shown).")
    work_dir: str = Field(".rosetta", max_length=255)
    max_cpus: float = Field(2.0, gt=0)
    max_memory_mb: int = Field(4096, ge=16)
    task_outbound: bool = True
    partition: str | None = Field(
        None, max_length=64, description="A batch scheduler's option (as in scheduler_options)."
    )
    time_limit_minutes: int | None = Field(None, ge=1, description="A batch scheduler's option (minutes).")
    enabled: bool = False


class ResourceChange(InSchema):
    description: str | None = Field(None, max_length=2000)
    max_cpus: float | None = Field(None, gt=0)
    max_memory_mb: int | None = Field(None, ge=16)
    task_outbound: bool | None = None
    partition: str | None = Field(None, max_length=64)
    time_limit_minutes: int | None = Field(None, ge=1)
    scheduler_options: dict | None = Field(None, description="The scheduler kind's options, all of them.")
    enabled: bool | None = None
    private_key: str | None = Field(None, max_length=16384)


class CheckOut(Schema):
    resource: str
    reachable: bool
    host_key: str
    pinned: bool
    engine: str
    partitions: list[PartitionOut]
    problems: list[str]


class ResourceIdentityOut(Schema):
    public_key: str = Field(..., description="Add this line to ~/.ssh/authorized_keys of your account there.")
    remote_username: str = Field(..., description="Your account's name on the resources.")


class ResourceIdentityIn(InSchema):
    remote_username: str = Field(
        ...,
        max_length=64,
        pattern=r"^([a-z_][a-z0-9_.-]*)?$",
        description="Your account's name there (empty: your Rosetta name). Accepted once your key logs in as it.",
    )


def _staff(request: HttpRequest) -> None:
    if not request.auth.is_staff:
        raise HttpError(403, "Only staff may change computing resources.")


def _resource(name: str) -> Resource:
    resource = Resource.objects.filter(name=name).first()
    if resource is None:
        raise NotFound(f"There is no computing resource called {name!r}.")
    return resource


@router.get("/resources", response=list[ResourceOut])
def list_resources(request: HttpRequest):
    """The resources you may start tasks on (staff: all of them)."""
    resources = Resource.objects.all()
    return resources if request.auth.is_staff else resources.filter(enabled=True)


class KindOut(Schema):
    role: str
    name: str
    label: str
    options: dict = Field(..., description="The JSON schema of the kind's options.")
    request: dict = Field(..., description="Schedulers: the JSON schema of what a task may ask.")


@router.get("/kinds", response=list[KindOut])
def list_kinds(request: HttpRequest):
    """The kinds of transports, schedulers and engines resources compose here (plug-ins included)."""
    return [
        {"role": kind.role, "name": kind.name, "label": kind.label, "options": kind.options.model_json_schema(),
         "request": kind.request.model_json_schema()}
        for role in kinds.ROLES for kind in kinds.of(role)
    ]  # fmt: skip


@router.get("/resources/{name}", response={200: ResourceDetailOut, 403: Message, 404: Message})
def show_resource(request: HttpRequest, name: str):
    _staff(request)
    return _resource(name)


@router.post("/resources", response={201: ResourceDetailOut, 400: Message, 403: Message, 409: Message})
def add_resource(request: HttpRequest, payload: ResourceIn):
    """Add a resource (staff). Then check it — and pin its host key — before enabling it."""
    _staff(request)
    fields = {key: value for key, value in payload.dict().items() if value is not None}
    name, private_key = fields.pop("name"), fields.pop("private_key")
    return 201, services.save_resource(Resource(name=name), private_key=private_key or None, **fields)


@router.patch(
    "/resources/{name}", response={200: ResourceDetailOut, 400: Message, 403: Message, 404: Message, 409: Message}
)
def change_resource(request: HttpRequest, name: str, payload: ResourceChange):
    _staff(request)
    fields = {key: value for key, value in payload.dict().items() if value is not None}
    private_key = fields.pop("private_key", None)
    return services.save_resource(_resource(name), private_key=private_key, **fields)


@router.post("/resources/{name}/check", response={200: CheckOut, 403: Message, 404: Message})
async def check_resource(request: HttpRequest, name: str, pin: bool = False):
    """Connect and report the host key, the engine and (Slurm) the partitions; `pin=true` trusts
    the host key presented now."""
    await sync_to_async(_staff)(request)
    resource = await sync_to_async(_resource)(name)
    return dataclasses.asdict(await services.check_resource(resource, pin=pin))


@router.get("/me/ssh-key", response=ResourceIdentityOut)
def my_ssh_key(request: HttpRequest):
    """Your own key for resources where you run as your own account (made on first use)."""
    identity = SSHIdentity.of(request.auth)
    return {"public_key": identity.public_key, "remote_username": identity.remote_name}


@router.put("/me/ssh-key", response={200: ResourceIdentityOut, 400: Message, 409: Message})
async def set_remote_username(request: HttpRequest, payload: ResourceIdentityIn):
    """Your account's name there: first add your public key to that account's authorized_keys;
    Rosetta logs in with it to check, and refuses a name another user holds."""
    identity = await remote_names.claim(request.auth, payload.remote_username)
    return {"public_key": identity.public_key, "remote_username": identity.remote_name}
