import pytest

from rosetta.computing.contract import Observation, Seen
from rosetta.tasks.phases import Act, Desired, IllegalTransition, Phase, TaskView, Timeouts, check_transition, decide

RUNNING = Observation("t", Seen.RUNNING, endpoint=("127.0.0.1", 40000))
STARTING = Observation("t", Seen.STARTING)
QUEUED = Observation("t", Seen.QUEUED, reason="Resources")
EXITED = Observation("t", Seen.ENDED, exit_code=3)
UNKNOWN = Observation("t", Seen.UNKNOWN)
LIMITS = Timeouts(start=60, stop=30)


def view(phase, desired=Desired.RUNNING, age=0.0):
    return TaskView(Phase(phase), desired, age)


@pytest.mark.parametrize(
    ("phase", "container", "act"),
    [
        ("created", None, Act.START),
        ("created", RUNNING, Act.ADOPT),  # controller died between `podman run` and recording it
        ("starting", RUNNING, Act.PROBE),
        ("starting", None, Act.VANISHED),
        ("running", RUNNING, Act.NOTHING),
        ("running", None, Act.VANISHED),  # removed behind our back
        ("running", EXITED, Act.ENDED),
        ("starting", EXITED, Act.ENDED),
        ("stopped", None, Act.NOTHING),
        ("exited", RUNNING, Act.CLEAN_UP),
        ("created", QUEUED, Act.QUEUE),  # a batch scheduler holds the work
        ("queued", QUEUED, Act.NOTHING),
        ("queued", STARTING, Act.PLACE),  # the scheduler started the job
        ("queued", RUNNING, Act.PLACE),
        ("queued", None, Act.VANISHED),  # cancelled outside Rosetta
        ("queued", EXITED, Act.ENDED),
        ("created", STARTING, Act.ADOPT),
        ("running", UNKNOWN, Act.NOTHING),  # the resource cannot tell: do not guess
    ],
)
def test_decide_for_a_task_that_should_run(phase, container, act):
    assert decide(view(phase), container, LIMITS) is act


def test_starting_too_long_times_out():
    assert decide(view("starting", age=61), RUNNING, LIMITS) is Act.TIMED_OUT
    assert decide(view("starting", age=59), RUNNING, LIMITS) is Act.PROBE


def test_stopping_too_long_fails():
    assert decide(view("stopping", Desired.STOPPED, age=31), RUNNING, LIMITS) is Act.STOP_TIMED_OUT
    assert decide(view("stopping", Desired.STOPPED, age=29), RUNNING, LIMITS) is Act.STOP


@pytest.mark.parametrize("desired", [Desired.STOPPED, Desired.DELETED])
def test_stop_requests(desired):
    assert decide(view("created", desired), None, LIMITS) is Act.CANCEL
    assert decide(view("created", desired), RUNNING, LIMITS) is Act.STOP
    assert decide(view("running", desired), RUNNING, LIMITS) is Act.STOP
    assert decide(view("stopping", desired), None, LIMITS) is Act.STOP
    assert decide(view("queued", desired), QUEUED, LIMITS) is Act.STOP  # cancel while queued


def test_every_act_leads_to_a_legal_transition():
    # A task created with a container already there may be stopped straight from `created`.
    check_transition(Phase.CREATED, Phase.STOPPING)
    check_transition(Phase.QUEUED, Phase.STOPPING)
    check_transition(Phase.QUEUED, Phase.STARTING)


def test_deleted_final_task_is_forgotten_once_nothing_runs():
    assert decide(view("stopped", Desired.DELETED), None, LIMITS) is Act.FORGET
    assert decide(view("stopped", Desired.DELETED), RUNNING, LIMITS) is Act.CLEAN_UP


def test_legal_and_illegal_transitions():
    check_transition(Phase.CREATED, Phase.STARTING)
    check_transition(Phase.RUNNING, Phase.EXITED)
    with pytest.raises(IllegalTransition):
        check_transition(Phase.STOPPED, Phase.RUNNING)
    with pytest.raises(IllegalTransition):
        check_transition(Phase.RUNNING, Phase.CREATED)
    assert all(not Phase(p).is_final for p in ("created", "starting", "running", "stopping"))
