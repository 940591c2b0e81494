from datetime import datetime
from typing import Annotated, Literal

from ninja import Schema
from pydantic import ConfigDict, Field, StringConstraints, model_validator

from rosetta.accounts.tokens import SCOPES
from rosetta.gateway.ssh_access import ssh_access
from rosetta.storage.services import home_mount, what_is_kept
from rosetta.tasks.progress import progress_of
from rosetta.tasks.services import MAX_STOP_REASON, digest_kind, ssh_host_key_fingerprint, time_left


class InSchema(Schema):
    """A request body: a field the API does not take is refused (422, naming it), never silently
    ignored — a misspelt option would otherwise leave its default in place unsaid."""

    model_config = ConfigDict(extra="forbid")


class Message(Schema):
    detail: str


class HealthOut(Schema):
    status: str = Field(..., description="ok | degraded")
    disk_free_bytes: int = Field(..., description="Free space on the platform's own disk (ROSETTA_HOME).")
    problems: list[str] = Field(..., description="What keeps the platform from working, in plain words.")


class UserOut(Schema):
    username: str
    is_staff: bool


class EventOut(Schema):
    time: datetime
    phase: str = Field(..., description="The task's phase after this event.")
    reason: str = Field(..., description="What happened, in plain words.")
    detail: str = Field("", description="The resource's own words, for staff (empty for others).")

    @staticmethod
    def resolve_detail(event, context) -> str:
        # An engine's own words can tell what this machine reaches (a pull's connection errors name
        # addresses and ports): for staff only. Others have the plain reason.
        user = getattr((context or {}).get("request"), "auth", None)
        return event.detail if user is not None and user.is_staff else ""


class TaskIn(InSchema):
    software: str | None = Field(
        None,
        max_length=230,
        description="The software: NAME, NAME:VERSION or OWNER/NAME:VERSION (see GET /software/resolve); "
        "required unless `from_record` is given.",
    )
    version: str | None = Field(None, max_length=32, description="Its version, if not in `software`.")
    resource: str | None = Field(
        None, max_length=64, description="Name of a computing resource (default: the platform's default resource)."
    )
    name: str | None = Field(
        None, max_length=63, description="Unique among your tasks; derived from the software if omitted."
    )
    cpus: float = Field(1.0, description="CPU cores, e.g. 0.5 or 2 (within the resource's limits).")
    memory_mb: int = Field(512, description="Memory limit in MiB (within the resource's limits).")
    environment: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    partition: str = Field("", max_length=64, description="Batch schedulers: the partition (default: the resource's).")
    time_limit_minutes: int = Field(0, ge=0, le=525600, description="Batch schedulers: minutes the task may run.")
    options: dict[str, str | int] = Field(
        default_factory=dict,
        max_length=32,
        description="Batch schedulers: what the task asks of the resource's scheduler, by the names of its kind's "
        "options (Slurm: partition, time_limit_minutes, account, qos, gres); left out: the resource's own.",
    )
    storages: list[Annotated[str, StringConstraints(max_length=320)]] | None = Field(
        None,
        max_length=32,
        description=(
            "Storages to mount (see /storages), each `NAME` (at its own mount point) or `NAME:/MOUNT/POINT`; "
            "[] mounts none; omitted: the software's defaults. The one mounted at /home/rosetta is the task's "
            "home, kept from task to task; without one, the home is scratch space, lost when the task ends."
        ),
    )

    from_record: dict | None = Field(
        None,
        description="Run a task's record again (GET /tasks/{task}/record): exactly its software entry and image "
        "digest, with its request; `resource` chooses another resource. The other fields are then ignored. "
        "Refused (404/409, with the newest version offered) when that entry is gone, retired or runs another image.",
    )

    @model_validator(mode="after")
    def software_or_record(self):
        if self.software is None and self.from_record is None:
            raise ValueError("software is required: the software to start, unless from_record gives a task's record")
        return self

    def request_fields(self) -> dict:
        """The fields of a TaskRequest: the batch fields of their own are options of the scheduler's too."""
        fields = self.dict()
        fields.pop("from_record")
        options = fields.pop("options")
        batch = {name: fields.pop(name) for name in ("partition", "time_limit_minutes")}
        return {**fields, "scheduler_options": {**options, **{name: value for name, value in batch.items() if value}}}


class StopIn(InSchema):
    reason: str = Field(
        "",
        max_length=MAX_STOP_REASON,
        description="Why it is stopped, shown to its owner in the task's events. Staff stopping another user's "
        "task must give one.",
    )


class MountOut(Schema):
    storage: str | None = Field(None, alias="storage.name")
    target: str = Field(..., description="Where the task sees it.")
    read_only: bool


class Placement(Schema):
    job: str | None = Field(None, description="The batch job's id.")
    node: str | None = Field(None, description="The node it runs on.")
    reason: str | None = Field(None, description="Why it still waits in the queue (the scheduler's words).")
    starts_at: str | None = Field(None, description="When the scheduler expects it to start (ISO 8601, UTC).")
    ends_at: str | None = Field(None, description="When its time limit ends it (ISO 8601, UTC).")


class SSHAccessOut(Schema):
    command: str = Field(..., description="ssh through the platform's SSH front door (a jump host).")
    proxy_jump: str = Field(..., description="USER@HOST:PORT of the door, for -J or -o ProxyJump=.")
    destination: str = Field(..., description="LOGIN@TASK-ID, behind the door.")
    scp: str = Field(..., description="Copying a file with scp (replace FILE).")
    sftp: str


class SSHAccessDetailOut(SSHAccessOut):
    host_key_fingerprint: str | None = Field(
        None,
        description="The SHA256 fingerprint of the host key the task's own SSH server printed when it started "
        "(what ssh asks about on the first connection to the task, for scripts to pin); null until it has.",
    )


class TaskOut(Schema):
    id: str
    name: str
    owner: str = Field(..., alias="owner.username")
    software: str = Field(..., alias="software.name")
    software_version: str = Field(..., alias="software.version")
    software_id: int = Field(..., description="The catalogue entry it runs, even once retired.")
    software_digest: str = Field(
        ...,
        description="The image digest it was started with, as the catalogue shows it (see software_digest_kind).",
    )
    software_digest_kind: Literal["registry", "local", ""] = Field(
        ...,
        description="Which digest that is: `registry`, the manifest digest in the platform's registry (the "
        "catalogue's `digest`); `local`, this machine's image digest (not copied there); empty when none was recorded.",
    )
    resource: str = Field(..., alias="resource.name")
    phase: str
    desired: str
    cpus: float
    memory_mb: int
    interface_url: str
    exit_code: int | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    partition: str
    time_limit_minutes: int
    options: dict = Field(..., description="What the task asked of its scheduler (its kind's options).")
    placement: Placement = Field(..., description="Where a batch scheduler has the task (empty elsewhere).")
    time_left_seconds: int | None = Field(
        None, description="Seconds before its batch job's time limit ends it, while it starts or runs (else null)."
    )
    ssh_command: str | None = Field(None, description="Tasks with an SSH interface: the command that logs in.")
    ssh: SSHAccessOut | None = Field(None, description="Tasks with an SSH interface: how to reach it with OpenSSH.")
    outcome: Literal["active", "stopped", "succeeded", "failed"] = Field(
        ..., description="How it went: a non-zero exit is `failed`, like a failure to start."
    )
    reason: str = Field(..., description="The latest word in its phase: why it failed, what it waits for.")
    phase_since: datetime = Field(..., description="When it entered its phase.")
    waiting_for: str = Field(..., description="What a task in transition waits for (empty otherwise).")
    phase_timeout: float | None = Field(..., description="Seconds the current phase may last, where it has a limit.")
    warning: str = Field(..., description="Something unusual about its progress, in plain words (or empty).")

    @staticmethod
    def resolve_waiting_for(task) -> str:
        return progress_of(task).waiting_for

    @staticmethod
    def resolve_phase_timeout(task) -> float | None:
        return progress_of(task).timeout

    @staticmethod
    def resolve_warning(task) -> str:
        return progress_of(task).warning

    @staticmethod
    def resolve_reason(task) -> str:
        return getattr(task, "reason", None) or ""

    @staticmethod
    def resolve_software_digest_kind(task) -> str:
        return digest_kind(task)

    @staticmethod
    def resolve_time_left_seconds(task) -> int | None:
        return time_left(task)

    @staticmethod
    def resolve_options(task) -> dict:
        return task.scheduler_options

    @staticmethod
    def resolve_placement(task) -> dict:
        return {name: task.backend_state.get(name) for name in ("job", "node", "reason", "starts_at", "ends_at")}

    @staticmethod
    def resolve_ssh_command(task) -> str | None:
        access = ssh_access(task)
        return access.command if access else None

    @staticmethod
    def resolve_ssh(task) -> dict | None:
        access = ssh_access(task)
        return access.__dict__ if access else None


class TaskDetailOut(TaskOut):
    ssh: SSHAccessDetailOut | None = Field(
        None, description="Tasks with an SSH interface: how to reach it with OpenSSH, and its server's host key."
    )
    environment: dict[str, str]
    image_id: str
    events: list[EventOut]
    mounts: list[MountOut] = Field(..., description="The storages it mounts.")
    home_storage: str | None = Field(
        ..., description="The storage that is its home (/home/rosetta), kept; null: the home is scratch space."
    )
    kept: str = Field(..., description="What outlives the task and what does not, in plain words.")

    @staticmethod
    def resolve_ssh(task) -> dict | None:
        access = ssh_access(task)
        return {**access.__dict__, "host_key_fingerprint": ssh_host_key_fingerprint(task)} if access else None

    @staticmethod
    def resolve_mounts(task) -> list:
        return list(task.mounts.select_related("storage"))

    @staticmethod
    def resolve_home_storage(task) -> str | None:
        mount = home_mount(task.mounts.select_related("storage"))
        return mount.storage.name if mount is not None and mount.storage is not None else None

    @staticmethod
    def resolve_kept(task) -> str:
        return what_is_kept(task.mounts.select_related("storage"))

    @staticmethod
    def resolve_events(task) -> list:
        return list(task.events.all())


Scope = Literal[SCOPES]


class TokenIn(InSchema):
    name: str = Field("cli", min_length=1, max_length=64, description="Unique among your tokens.")
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="Omit for a token that lasts until revoked.")
    scopes: list[Scope] | None = Field(
        None,
        description="What it may do: `read` (every GET), `tasks` (start, stop, open tasks; keys and tokens), "
        "`files` (change files), `software` (add, build software), `admin` (staff powers; staff only). "
        "Omit for read, tasks, files and software. A token never makes one that may do more than itself.",
    )


class TokenOut(Schema):
    name: str
    token: str = Field(..., description="Shown once; store it safely.")
    expires: datetime | None = Field(None, description="When it stops working (never, if null).")
    scopes: list[str]


class TokenInfoOut(Schema):
    name: str
    hint: str = Field(..., description="The first characters of the token, to tell tokens apart.")
    scopes: list[str]
    created: datetime
    last_used: datetime | None
    expires: datetime | None
    expired: bool

    @staticmethod
    def resolve_scopes(token) -> list[str]:
        return token.scopes.split()


class ScratchOut(Schema):
    home: str = Field(..., description="The task's home.")
    home_storage: str | None = Field(..., description="The storage that is its home (kept); null: scratch space.")
    checked: bool = Field(..., description="Whether the platform looked into the running task's home.")
    files: int | None = Field(
        ..., description="Files found in a scratch home (hidden ones left out), at most 1000; null: not looked."
    )
    more: bool = Field(..., description="More files than `files` are there.")
    names: list[str] = Field(..., description="Some of them, relative to the home.")
    warning: str = Field(..., description="What stopping the task would lose, in plain words (empty: nothing known).")
