import logging
import secrets
import string
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from rosetta.catalog.models import Software
from rosetta.computing.models import Resource
from rosetta.core import metrics, notify
from rosetta.tasks.phases import FINAL_PHASE_NAMES, Desired, Phase, check_transition

log = logging.getLogger(__name__)

ID_ALPHABET = string.ascii_lowercase + string.digits
MAX_LOG_TAIL = 256 * 1024
_ROUTED_FIELDS = frozenset({"phase", "endpoint_host", "endpoint_port"})


def new_task_id() -> str:
    # Starts with a letter: it is the first label of the task's origin (a DNS name).
    return "t" + "".join(secrets.choice(ID_ALPHABET) for _ in range(9))


class Task(models.Model):
    """One analysis task: one container exposing one interface.

    The web and API write what the user wants (``desired``); only the controller writes what
    is — phase, endpoint, exit code, times, backend state — and only through ``transition``,
    ``observe`` and ``note``, each conditional on the ``revision`` it decided from
    (compare-and-swap): a decision taken on a row that has changed since is dropped. Users'
    requests change only ``desired``, without a new revision: the one write that must not
    outrun them, marking a launch, is conditional on it too (``launching``).
    """

    id = models.CharField(primary_key=True, max_length=16, default=new_task_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    name = models.CharField(max_length=63)
    software = models.ForeignKey(Software, on_delete=models.PROTECT, related_name="tasks")
    software_digest = models.CharField(
        max_length=80, blank=True, help_text="The entry's image digest when the task was requested."
    )
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="tasks")
    cpus = models.FloatField(default=1.0)
    memory_mb = models.PositiveIntegerField(default=512)
    environment = models.JSONField(default=dict, blank=True)
    # What the task asks of its batch scheduler (partition, time limit, account...), as the
    # scheduler kind's request schema validated it; what it leaves out, the resource decides.
    scheduler_options = models.JSONField(default=dict, blank=True)

    desired = models.CharField(
        max_length=8, choices=[(d.value, d.value) for d in Desired], default=Desired.RUNNING.value
    )
    phase = models.CharField(max_length=8, choices=[(p.value, p.value) for p in Phase], default=Phase.CREATED.value)
    phase_since = models.DateTimeField(default=timezone.now)
    revision = models.PositiveIntegerField(default=0, help_text="Bumped by every controller write.")
    endpoint_host = models.CharField(
        max_length=255, blank=True, help_text="Where the interface listens, as the resource sees it."
    )
    endpoint_port = models.PositiveIntegerField(null=True, blank=True)
    backend_state = models.JSONField(default=dict, blank=True, help_text="What identifies the work on the resource.")
    exit_code = models.IntegerField(null=True, blank=True)
    memory_kills = models.PositiveIntegerField(
        default=0, help_text="Processes killed by the memory limit, as reported."
    )
    image_id = models.CharField(max_length=80, blank=True, help_text="The image the container actually ran.")
    log_tail = models.TextField(blank=True, help_text="The end of the logs, kept when the container goes.")

    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [
            # Lists go newest first a page at a time (rosetta.core.keyset): one user's, or everyone's.
            models.Index(fields=["owner", "-created", "-id"], name="task_owner_newest"),
            models.Index(fields=["-created", "-id"], name="task_newest"),
            # The gateway's route table: the active tasks, and the ones that ended last.
            models.Index(fields=["phase"], name="task_phase"),
            models.Index(fields=["finished"], name="task_finished"),
        ]
        constraints = [
            # A finished task's name can be used again: only active tasks need telling apart.
            models.UniqueConstraint(
                fields=["owner", "name"],
                condition=~models.Q(phase__in=sorted(FINAL_PHASE_NAMES)),
                name="unique_active_task_name_per_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def phase_enum(self) -> Phase:
        return Phase(self.phase)

    @property
    def is_final(self) -> bool:
        return self.phase_enum.is_final

    @property
    def outcome(self) -> str:
        """How it went, as a person reads it: active, stopped (as asked), succeeded (exited
        with code 0) or failed (failed, or exited otherwise: a crash is not a clean end)."""
        if not self.is_final:
            return "active"
        if self.phase == Phase.STOPPED.value:
            return "stopped"
        if self.phase == Phase.EXITED.value and self.exit_code == 0:
            return "succeeded"
        return "failed"

    # The public API's and pages' names for the two requests every batch scheduler takes.
    @property
    def partition(self) -> str:
        return self.scheduler_options.get("partition", "")

    @property
    def time_limit_minutes(self) -> int:
        return self.scheduler_options.get("time_limit_minutes", 0)

    @property
    def other_scheduler_options(self) -> list[tuple[str, object]]:
        """What else the task asked of its batch scheduler (an account, a QoS...), as option and value."""
        return [
            (name.replace("_", " "), value)
            for name, value in self.scheduler_options.items()
            if name not in ("partition", "time_limit_minutes")
        ]

    @property
    def endpoint(self) -> tuple[str, int] | None:
        return (self.endpoint_host, self.endpoint_port) if self.endpoint_port else None

    @property
    def interface_url(self) -> str:
        public = urlsplit(settings.PUBLIC_URL)
        port = f":{public.port}" if public.port else ""
        return f"{public.scheme}://{self.id}.{settings.TASKS_DOMAIN}{port}/"

    # -- the controller's writes, each conditional on the revision it decided from ------------

    def transition(self, phase: Phase, reason: str, *, detail: str = "", cause: str = "", **fields) -> bool:
        """Move to ``phase`` with a human reason, and an event saying so. False, and nothing
        written, when the row has changed (or gone) since this copy was read. ``cause``: a
        failure's short name, for operators' numbers (rosetta.core.metrics)."""
        check_transition(self.phase_enum, phase)
        now = timezone.now()
        values = {"phase": phase.value, "phase_since": now, **fields}
        if phase is Phase.RUNNING and self.started is None:
            values["started"] = now
        if phase.is_final:
            values.update(finished=now, endpoint_host="", endpoint_port=None)
        if not self._write(values, event=(phase.value, reason, detail)):
            return False
        log.info("task %s: %s (%s)", self.pk, phase.value, reason)
        if "started" in values:  # its interface answered for the first time
            resource = self.resource.name
            metrics.TASK_STARTS.labels(resource).inc()
            metrics.START_SECONDS.labels(resource).observe(max(0.0, (now - self.created).total_seconds()))
        elif phase is Phase.FAILED:
            metrics.TASK_FAILURES.labels(self.resource.name, cause or "other").inc()
        return True

    def observe(self, reason: str = "", detail: str = "", **fields) -> bool:
        """Record what the backend observed (endpoint, backend state, ...) without a new phase,
        with an event when there is something to say about it."""
        return self._write(fields, event=(self.phase, reason, detail) if reason else None)

    def launching(self, reason: str, **fields) -> bool:
        """Record that work is about to be launched on the resource, only if the row is as read
        and the user still wants the task running: a start decided before a stop request
        launches nothing. What the resource did afterwards is recorded whatever ``desired``
        says (a job id, an exit code), so that a stop finds it."""
        return self._write(fields, event=(self.phase, reason, ""), desired=Desired.RUNNING.value)

    def note(self, reason: str, detail: str = "") -> bool:
        """An event that does not change the phase, if the row is still as read. A repeat of
        the latest event is dropped, so an error met on every pass is said once."""
        with transaction.atomic():
            if not Task.objects.filter(pk=self.pk, revision=self.revision).exists():
                return False
            self._add_event(self.phase, reason, detail)
        return True

    def _write(self, values: dict, event: tuple[str, str, str] | None = None, **condition) -> bool:
        with transaction.atomic():
            updated = Task.objects.filter(pk=self.pk, revision=self.revision, **condition).update(
                revision=models.F("revision") + 1, **values
            )
            if not updated:
                return False
            if event is not None:
                self._add_event(*event)
            if _ROUTED_FIELDS.intersection(values):
                notify.after_commit(notify.GATEWAY)  # its route table shows phases and endpoints
        for name, value in values.items():
            setattr(self, name, value)
        self.revision += 1
        return True

    # -- what users' requests write ------------------------------------------------------------

    def add_event(self, reason: str) -> None:
        """An event from a user's request (not the controller's), in the current phase."""
        self._add_event(self.phase, reason, "")

    def _add_event(self, phase: str, reason: str, detail: str) -> None:
        latest = self.events.order_by("-time", "-id").values_list("phase", "reason").first()
        if latest != (phase, reason):
            TaskEvent.objects.create(task_id=self.pk, phase=phase, reason=reason, detail=detail)


class TaskEvent(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    time = models.DateTimeField(default=timezone.now, db_index=True)
    phase = models.CharField(max_length=8)
    reason = models.TextField(help_text="What happened, in plain words.")
    detail = models.TextField(blank=True, help_text="The resource's own words, for the operator.")

    class Meta:
        ordering = ["time", "id"]

    def __str__(self) -> str:
        return f"{self.time:%H:%M:%S} {self.phase}: {self.reason}"


class Quota(models.Model):
    """What a user, or a group's members together, may use at once on a resource (or on all of
    them): tasks, CPUs and memory of their active tasks. Empty limits do not limit."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE)
    resource = models.ForeignKey(
        Resource, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: all resources together."
    )
    max_tasks = models.PositiveIntegerField(null=True, blank=True)
    max_cpus = models.FloatField(null=True, blank=True)
    max_memory_mb = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, group__isnull=True)
                | models.Q(user__isnull=True, group__isnull=False),
                name="quota_for_a_user_or_a_group",
            ),
            *(
                models.UniqueConstraint(
                    fields=[who, *(["resource"] if per_resource else [])],
                    condition=models.Q(**{f"{who}__isnull": False, "resource__isnull": not per_resource}),
                    name=f"one_quota_per_{who}_{'and_resource' if per_resource else 'everywhere'}",
                )
                for who in ("user", "group")
                for per_resource in (True, False)
            ),
        ]

    @property
    def holder(self) -> str:
        return f"user {self.user.get_username()}" if self.user_id else f"group {self.group.name}"

    @property
    def where(self) -> str:
        return f"on {self.resource.name}" if self.resource_id else "on all resources"

    def __str__(self) -> str:
        return f"quota of {self.holder} {self.where}"


class TaskRecord(models.Model):
    """What a task ran, kept when the task is deleted from its owner's list (rosetta.tasks.records):
    hidden from the list, not destroyed, until an operator purges it."""

    id = models.CharField(primary_key=True, max_length=16, help_text="The task's id.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="task_records")
    name = models.CharField(max_length=63)
    created = models.DateTimeField(help_text="When the task was requested.")
    kept = models.DateTimeField(auto_now_add=True, help_text="When the task was deleted and its record kept.")
    document = models.JSONField()

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["owner", "name", "-created"], name="record_owner_name")]
