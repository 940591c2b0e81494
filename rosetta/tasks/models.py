import secrets
import string
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone

from rosetta.catalog.models import Software
from rosetta.computing.models import Resource
from rosetta.tasks.phases import Desired, Phase, check_transition

ID_ALPHABET = string.ascii_lowercase + string.digits
MAX_LOG_TAIL = 256 * 1024


def new_task_id() -> str:
    # Starts with a letter: it is the first label of the task's origin (a DNS name).
    return "t" + "".join(secrets.choice(ID_ALPHABET) for _ in range(9))


class Task(models.Model):
    """One analysis task: one container exposing one interface.

    The web and API write what the user wants (``desired``); only the controller writes what
    is (``phase``, endpoint, exit code, times) through ``record``.
    """

    id = models.CharField(primary_key=True, max_length=16, default=new_task_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    name = models.CharField(max_length=63)
    software = models.ForeignKey(Software, on_delete=models.PROTECT, related_name="tasks")
    resource = models.ForeignKey(Resource, on_delete=models.PROTECT, related_name="tasks")
    cpus = models.FloatField(default=1.0)
    memory_mb = models.PositiveIntegerField(default=512)
    environment = models.JSONField(default=dict, blank=True)

    desired = models.CharField(max_length=8, choices=[(d.value, d.value) for d in Desired], default=Desired.RUNNING.value)
    phase = models.CharField(max_length=8, choices=[(p.value, p.value) for p in Phase], default=Phase.CREATED.value)
    phase_since = models.DateTimeField(default=timezone.now)
    endpoint_host = models.CharField(max_length=255, blank=True)
    endpoint_port = models.PositiveIntegerField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    image_id = models.CharField(max_length=80, blank=True, help_text="The image the container actually ran.")
    log_tail = models.TextField(blank=True, help_text="The end of the logs, kept when the container goes.")

    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="unique_task_name_per_owner")]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def phase_enum(self) -> Phase:
        return Phase(self.phase)

    @property
    def is_final(self) -> bool:
        return self.phase_enum.is_final

    @property
    def endpoint(self) -> tuple[str, int] | None:
        return (self.endpoint_host, self.endpoint_port) if self.endpoint_port else None

    @property
    def interface_url(self) -> str:
        public = urlsplit(settings.PUBLIC_URL)
        port = f":{public.port}" if public.port else ""
        return f"{public.scheme}://{self.id}.{settings.TASKS_DOMAIN}{port}/"

    def record(self, phase: Phase, reason: str, **fields) -> None:
        """Move to ``phase`` with a human reason (controller only). Saves the task and an event."""
        check_transition(self.phase_enum, phase)
        now = timezone.now()
        self.phase = phase.value
        self.phase_since = now
        if phase is Phase.RUNNING and self.started is None:
            self.started = now
        if phase.is_final:
            self.finished = now
            self.endpoint_host, self.endpoint_port = "", None
        for name, value in fields.items():
            setattr(self, name, value)
        # Only the controller's own fields: the user may have changed `desired` since this
        # copy was read, and writing it back would silently undo their stop or delete.
        owned = {"phase", "phase_since", "started", "finished", "endpoint_host", "endpoint_port", *fields}
        self.save(update_fields=owned)
        self.events.create(phase=phase.value, reason=reason)

    def note(self, reason: str) -> None:
        """An event that does not change the phase. A repeat of the latest event is dropped, so
        an error met on every controller pass is said once, not every second."""
        latest = self.events.order_by("-time", "-id").values_list("phase", "reason").first()
        if latest != (self.phase, reason):
            self.events.create(phase=self.phase, reason=reason)


class TaskEvent(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    time = models.DateTimeField(default=timezone.now, db_index=True)
    phase = models.CharField(max_length=8)
    reason = models.TextField()

    class Meta:
        ordering = ["time", "id"]

    def __str__(self) -> str:
        return f"{self.time:%H:%M:%S} {self.phase}: {self.reason}"
