"""What stopping a task would lose: the files a person keeps in its home when that home is
scratch space (no storage mounted there). The platform looks into the running container with
the engine's exec where it can (this machine, SSH hosts); inside a batch job on a compute node
it cannot, and says so."""

from __future__ import annotations

from dataclasses import dataclass, field

from asgiref.sync import sync_to_async

from rosetta.computing.backends import backend_for
from rosetta.computing.contract import TASK_HOME, TaskRef
from rosetta.computing.errors import ComputingError
from rosetta.storage.services import home_mount
from rosetta.tasks.models import Task
from rosetta.tasks.phases import Phase

LIMIT = 1000  # files counted at most
SHOWN = 5  # of them named
MAX_NAME = 100  # characters of a name shown
LOOKED_INTO = frozenset({Phase.STARTING, Phase.RUNNING})  # a container that may hold a person's files


@dataclass
class Scratch:
    home: str
    home_storage: str | None  # the storage that is the home (kept); None: scratch space
    checked: bool = False
    files: int | None = None
    more: bool = False
    names: list[str] = field(default_factory=list)
    warning: str = ""


async def scratch_of(task: Task) -> Scratch:
    mount = await sync_to_async(lambda: home_mount(task.mounts.select_related("storage")))()
    if mount is not None:
        return Scratch(TASK_HOME, mount.storage.name if mount.storage is not None else "(removed)")
    answer = Scratch(TASK_HOME, None)
    if task.phase_enum not in LOOKED_INTO:
        return answer  # no container yet, or already going: nothing a Stop would lose
    try:
        backend = await sync_to_async(backend_for)(task.resource, task.owner)
        found = await backend.home_files(TaskRef(task.id, task.backend_state), TASK_HOME, LIMIT + 1)
    except ComputingError:
        answer.warning = (
            f"Rosetta could not look into this task's home ({TASK_HOME}), which is scratch space: whatever is "
            "there is lost when the task stops."
        )
        return answer
    if found is None:
        answer.warning = (
            f"Rosetta cannot look into a running container on {task.resource.name} (a batch job on a compute node): "
            f"whatever is in its home ({TASK_HOME}, scratch space) is lost when the task stops."
        )
        return answer
    answer.checked, answer.files, answer.more = True, min(len(found), LIMIT), len(found) > LIMIT
    answer.names = [name[:MAX_NAME] for name in found[:SHOWN]]
    if found:
        count = f"More than {LIMIT} files" if answer.more else f"{len(found)} file{'s' if len(found) != 1 else ''}"
        names = ", ".join(answer.names) + (", …" if len(found) > SHOWN else "")
        answer.warning = (
            f"{count} in this task's home ({TASK_HOME}) will be lost when it stops: its home is scratch space. "
            f"{names}. Copy what you need to a storage first."
        )
    return answer
