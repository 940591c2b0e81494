"""The task lifecycle as pure logic: which phases exist, which transitions are legal, and
what the controller must do for a task given what its backend observes.

created → queued → starting → running → stopping → stopped | exited | failed
(`queued` only where a batch scheduler places the work.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rosetta.computing.contract import Observation, Seen


class Phase(enum.StrEnum):
    CREATED = "created"
    QUEUED = "queued"
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
FINAL_PHASE_NAMES = frozenset(phase.value for phase in FINAL_PHASES)  # for the gateway, CLI and pages
ACTIVE_PHASE_NAMES = frozenset(phase.value for phase in ACTIVE_PHASES)
_ENDINGS = frozenset({Phase.STOPPING, Phase.EXITED, Phase.FAILED})

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.CREATED: frozenset({Phase.QUEUED, Phase.STARTING, Phase.STOPPING, Phase.STOPPED, Phase.EXITED, Phase.FAILED}),
    Phase.QUEUED: frozenset({Phase.STARTING, Phase.STOPPING, Phase.STOPPED, Phase.EXITED, Phase.FAILED}),
    Phase.STARTING: frozenset({Phase.RUNNING, *_ENDINGS}),
    Phase.RUNNING: _ENDINGS,
    Phase.STOPPING: frozenset({Phase.STOPPED, Phase.FAILED}),
    Phase.STOPPED: frozenset(),
    Phase.EXITED: frozenset(),
    Phase.FAILED: frozenset(),
}


class Desired(enum.StrEnum):
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
    START = "start"  # launch the work
    ADOPT = "adopt"  # the work exists already (the controller restarted mid-start)
    QUEUE = "queue"  # the work waits in a batch queue
    PLACE = "place"  # the batch scheduler started the work
    PROBE = "probe"  # the container runs, the interface has not answered yet
    STOP = "stop"  # stop requested: end the work, then `stopped`
    CANCEL = "cancel"  # stop requested before any work existed
    ENDED = "ended"  # the work ended by itself: record why, keep the logs, remove it
    VANISHED = "vanished"  # the work disappeared behind our back
    TIMED_OUT = "timed_out"  # the interface did not answer in time
    STOP_TIMED_OUT = "stop_timed_out"  # the resource did not remove the work in time
    CLEAN_UP = "clean_up"  # leftover work of a finished task
    FORGET = "forget"  # deletion requested and nothing left running: drop the record


@dataclass(frozen=True)
class Timeouts:
    start: float  # seconds from `starting` until the interface must answer
    stop: float  # seconds from `stopping` until the work must be gone


@dataclass(frozen=True)
class TaskView:
    phase: Phase
    desired: Desired
    seconds_in_phase: float


def decide(task: TaskView, observed: Observation | None, timeouts: Timeouts) -> Act:
    """What to do next for one task. Level-triggered: depends only on the current state."""
    if task.phase.is_final:
        if observed is not None:
            return Act.CLEAN_UP
        return Act.FORGET if task.desired is Desired.DELETED else Act.NOTHING
    if task.phase is Phase.STOPPING:
        return Act.STOP_TIMED_OUT if task.seconds_in_phase > timeouts.stop else Act.STOP
    if task.desired is not Desired.RUNNING:
        return Act.CANCEL if observed is None and task.phase is Phase.CREATED else Act.STOP
    if observed is None:
        return Act.START if task.phase is Phase.CREATED else Act.VANISHED
    if observed.state is Seen.ENDED:
        return Act.ENDED
    if observed.state is Seen.UNKNOWN:
        return Act.NOTHING
    if observed.state is Seen.QUEUED:
        return Act.QUEUE if task.phase is Phase.CREATED else Act.NOTHING
    if task.phase is Phase.CREATED:
        return Act.ADOPT
    if task.phase is Phase.QUEUED:
        return Act.PLACE
    if task.phase is Phase.STARTING:
        return Act.TIMED_OUT if task.seconds_in_phase > timeouts.start else Act.PROBE
    return Act.NOTHING
