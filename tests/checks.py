"""Assertions shared by tests of the task lifecycle."""

from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

from rosetta.tasks.phases import TRANSITIONS, Phase


def assert_legal(history: list[tuple[str, str]]) -> None:
    """A task's events (phase, reason): phases move only along legal transitions, no phase is
    entered twice, and no event is said twice in a row."""
    phases = [phase for phase, _ in history]
    for before, after in pairwise(phases):
        assert before == after or Phase(after) in TRANSITIONS[Phase(before)], history
    assert all(a != b for a, b in pairwise(history)), history
    entered = [after for before, after in pairwise(phases) if before != after]
    assert len(entered) == len(set(entered)), f"a phase entered twice: {history}"


def alive(pid: int) -> bool:
    """Whether a process runs (not a zombie waiting for this machine's slow init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def burst_of_starts(platform, token: str, count: int, **fields) -> list[int]:
    """``count`` task starts by one user at once (one connection each): their statuses, sorted."""

    def start(number: int) -> int:
        with platform.api(token) as api:
            body = {"software": "hello", "resource": "local", "name": f"burst-{number}", **fields}
            return api.post("/api/tasks", json=body).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return sorted(pool.map(start, range(count)))
