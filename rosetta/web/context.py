"""Template context every page gets."""

from rosetta.tasks.logs import LIVE_PHASES
from rosetta.tasks.phases import FINAL_PHASE_NAMES


def phases(request) -> dict:
    """The phase sets the page scripts need, from the one definition in rosetta.tasks."""
    return {
        "final_phases": " ".join(sorted(FINAL_PHASE_NAMES)),
        "live_phases": " ".join(sorted(phase.value for phase in LIVE_PHASES)),
    }
