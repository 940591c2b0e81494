"""The task lifecycle as pure logic: which phases exist, which transitions are legal, and
what the controller must do for a task given what the engine reports.

created → starting → running → stopping → stopped | exited | failed
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rosetta.computing.engines.base import ContainerStatus


class Phase(str, enum.Enum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_PHASES


FINAL_PHASES = frozenset({Phase.STOPPED, Phase.EXITED, Phase.FAILED})
ACTIVE_PHASES = frozenset(Phase) - FINAL_PHASES

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.CREATED: frozenset({Phase.STARTING, Phase.STOPPED, Phase.EXITED, Phase.FAILED}),
    Phase.STARTING: frozenset({Phase.RUNNING, Phase.STOPPING, Phase.EXITED, Phase.FAILED}),
    Phase.RUNNING: frozenset({Phase.STOPPING, Phase.EXITED, Phase.FAILED}),
    Phase.STOPPING: frozenset({Phase.STOPPED, Phase.FAILED}),
    Phase.STOPPED: frozenset(),
    Phase.EXITED: frozenset(),
    Phase.FAILED: frozenset(),
}


class Desired(str, enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    DELETED = "deleted"


class IllegalTransition(Exception):
    pass


def check_transition(current: Phase, new: Phase) -> None:
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"a task cannot go from {current.value} to {new.value}")


class Act(enum.Enum):
    NOTHING = "nothing"
    START = "start"                # launch the container
    ADOPT = "adopt"                # a container exists already (controller restarted mid-start)
    PROBE = "probe"                # container up, interface not confirmed yet
    STOP = "stop"                  # stop requested: remove the container, then `stopped`
    CANCEL = "cancel"              # stop requested before any container existed
    ENDED = "ended"                # container ended by itself: record exit code, keep logs, remove
    VANISHED = "vanished"          # container removed behind our back
    TIMED_OUT = "timed_out"        # interface did not answer in time
    STOP_TIMED_OUT = "stop_timed_out"  # the engine did not remove the container in time
    CLEAN_UP = "clean_up"          # leftover container of a finished task
    FORGET = "forget"              # deletion requested and nothing left running: drop the record


@dataclass(frozen=True)
class Timeouts:
    start: float   # seconds from `starting` until the interface must answer
    stop: float    # seconds from `stopping` until the container must be gone


@dataclass(frozen=True)
class TaskView:
    phase: Phase
    desired: Desired
    seconds_in_phase: float


def decide(task: TaskView, container: ContainerStatus | None, timeouts: Timeouts) -> Act:
    """What to do next for one task. Level-triggered: depends only on the current state."""
    if task.phase.is_final:
        if container is not None:
            return Act.CLEAN_UP
        return Act.FORGET if task.desired is Desired.DELETED else Act.NOTHING
    if task.phase is Phase.STOPPING:
        return Act.STOP_TIMED_OUT if task.seconds_in_phase > timeouts.stop else Act.STOP
    if task.desired is not Desired.RUNNING:
        return Act.CANCEL if container is None and task.phase is Phase.CREATED else Act.STOP
    if container is None:
        return Act.START if task.phase is Phase.CREATED else Act.VANISHED
    if container.has_ended:
        return Act.ENDED
    if task.phase is Phase.CREATED:
        return Act.ADOPT
    if task.phase is Phase.STARTING:
        return Act.TIMED_OUT if task.seconds_in_phase > timeouts.start else Act.PROBE
    return Act.NOTHING
