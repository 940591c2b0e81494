from django.core.exceptions import ValidationError
from django.db import models


class TransportKind(models.TextChoices):
    LOCAL = "local", "This machine"


class SchedulerKind(models.TextChoices):
    NONE = "none", "None (run directly)"


class EngineKind(models.TextChoices):
    PODMAN = "podman", "Podman"


class PullPolicy(models.TextChoices):
    MISSING = "missing", "Pull when missing"
    NEVER = "never", "Never pull (local images only)"
    ALWAYS = "always", "Always pull"


class Resource(models.Model):
    """Somewhere tasks run: a composition of transport × scheduler × engine."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True, max_length=2000)
    transport = models.CharField(max_length=16, choices=TransportKind.choices, default=TransportKind.LOCAL)
    scheduler = models.CharField(max_length=16, choices=SchedulerKind.choices, default=SchedulerKind.NONE)
    engine = models.CharField(max_length=16, choices=EngineKind.choices, default=EngineKind.PODMAN)
    pull_policy = models.CharField(max_length=8, choices=PullPolicy.choices, default=PullPolicy.MISSING)
    max_cpus = models.FloatField(default=2.0)
    max_memory_mb = models.PositiveIntegerField(default=4096)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def kind(self) -> str:
        return f"{self.get_transport_display()} · {self.get_scheduler_display()} · {self.get_engine_display()}"

    def transport_key(self) -> tuple:
        """What identifies the machine and account this resource reaches."""
        return (self.transport,)

    def backend_key(self) -> tuple:
        """What identifies the machinery behind this resource (not its limits or name)."""
        return (*self.transport_key(), self.scheduler, self.engine)

    def check_limits(self, cpus: float, memory_mb: int) -> None:
        """Raise ValidationError naming the offending option when a request does not fit."""
        if not 0.1 <= cpus <= self.max_cpus:
            raise ValidationError(f"cpus must be between 0.1 and {self.max_cpus:g} on {self.name}.")
        if not MIN_MEMORY_MB <= memory_mb <= self.max_memory_mb:
            raise ValidationError(
                f"memory must be between {MIN_MEMORY_MB} MiB and {self.max_memory_mb} MiB on {self.name}."
            )


MIN_MEMORY_MB = 16
