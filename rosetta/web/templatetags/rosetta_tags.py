"""Small template helpers: how tasks read in a list (relative times, outcomes) and memory sizes."""

from datetime import UTC, datetime

from django import template
from django.utils import timezone

from rosetta.core.units import format_memory, format_minutes
from rosetta.storage.services import home_mount
from rosetta.tasks import services
from rosetta.tasks.progress import progress_of

register = template.Library()


def duration(seconds: float) -> str:
    """12 s, 3 min, 2 h, 4 d: the largest unit, as people say it."""
    seconds = max(0, int(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@register.filter
def iso_time(text: str | None) -> str:
    """A time a backend gave in ISO 8601 ('2026-12-06T18:49:47+00:00') as the pages show
    times, in UTC to the minute ('2026-12-06 18:49'); what is no such time, as it is."""
    if not text:
        return ""
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return str(text)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M")


@register.filter
def memory(mb: int) -> str:
    return format_memory(mb)


@register.filter
def phase_label(task) -> str:
    """The phase, with an exit code that is not clean said beside it."""
    if task.phase == "exited" and task.exit_code not in (0, None):
        return f"exited ({task.exit_code})"
    return task.phase


@register.filter
def phase_class(task) -> str:
    return "phase-failed" if task.outcome == "failed" else f"phase-{task.phase}"


@register.filter
def since(task) -> str:
    """'running for 2 h', 'failed 3 min ago'."""
    seconds = (timezone.now() - task.phase_since).total_seconds()
    if task.is_final:
        return f"{phase_label(task)} {duration(seconds)} ago"
    return f"{task.phase} for {duration(seconds)}"


@register.filter
def progress(task):
    return progress_of(task)


@register.filter
def scratch_home(task) -> bool:
    """Whether the task's home is scratch space (no storage mounted there): lost when it ends."""
    return home_mount(task.mounts.all()) is None


@register.filter
def time_left(task) -> int | None:
    """Seconds before a batch job's time limit ends the task (None: no such limit now)."""
    return services.time_left(task)


@register.filter
def left_words(seconds: int) -> str:
    """'58 min', '1 h 30 min': how long a limit leaves, to the minute."""
    return format_minutes(seconds // 60) if seconds >= 60 else f"{seconds} s"


@register.filter
def minutes(count: int) -> str:
    return format_minutes(count)


@register.filter
def digest_kind(task) -> str:
    return services.digest_kind(task)
