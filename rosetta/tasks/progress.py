"""What a task in transition is waiting for, for how long it may, and whether that looks
wrong: one definition for the pages, the API and the CLI's --wait."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from rosetta.tasks.phases import Phase

# A controller picks a new task up within a second when it runs; past this, say so.
UNPICKED_AFTER = 5.0


@dataclass(frozen=True)
class Progress:
    waiting_for: str  # "" once there is nothing to wait for
    timeout: float | None  # seconds the phase may last, where it has a limit
    warning: str  # something unusual, in plain words; "" when all is well


def progress_of(task, now=None) -> Progress:
    now = now or timezone.now()
    elapsed = (now - task.phase_since).total_seconds()
    phase = task.phase_enum
    if phase is Phase.CREATED:
        if task.backend_state.get("launched"):
            return Progress(f"launching on {task.resource.name} (fetching the image if needed)", None, "")
        warning = ""
        if elapsed > UNPICKED_AFTER and task.desired == "running":
            warning = (
                f"No controller has picked this task up after {int(elapsed)} s: Rosetta's controller is busy or "
                "not running (operators: see `rosetta controller`, or `rosetta run`)."
            )
        return Progress("waiting for the controller to launch it", None, warning)
    if phase is Phase.QUEUED:
        return Progress(f"waiting in {task.resource.name}'s batch queue", None, "")
    if phase is Phase.STARTING:
        return Progress("waiting for the interface to answer", settings.TASK_START_TIMEOUT, "")
    if phase is Phase.STOPPING:
        return Progress("stopping", settings.TASK_STOP_TIMEOUT, "")
    return Progress("", None, "")
