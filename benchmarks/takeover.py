"""How long a remote backend goes unwatched when its active controller dies, side by side with
the same observation while it lives.

    testbed/up && .venv/bin/python benchmarks/takeover.py [--runs 5]

Two machines sharing one PostgreSQL, played on this one (tests/machines.py: homes and machine
names of their own, each with web, controller and gateway). Per run, on the test bed's SSH host
(`testbed-host`), with a task of its own running there:

- **live** — ask to stop the task, and take the time until the task's "Stopping" event: how
  soon the active controller observes a change and acts on it.
- **takeover** — `kill -9` the active controller, ask to stop the task at once, and take the
  time from the kill to its "Stopping" event: the standby must take the backend's lock over,
  see the backend afresh, and act. Also: the time until the lock has a new holder
  (pg_locks).

Event times are the database's; both sides measure from this machine's clock, on the same
machine. The killed controller is started again (it stands by) before the next run, so the
roles swap from run to run. Prints medians and the ratio takeover/live. Never gates CI.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.machines import (  # after the path is set
    REMOTE,
    postgres,
    remote_lock_key,
    start,
    start_both,
    stop_both,
    two_machines,
    wait_for_holder,
)


def stopping_seen(api, task_id: str, timeout: float = 60) -> float:
    """The wall-clock time of the task's "Stopping" event, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in api.get(f"/api/tasks/{task_id}").json()["events"]:
            if event["phase"] == "stopping":
                return datetime.fromisoformat(event["time"]).timestamp()
        time.sleep(0.02)
    raise RuntimeError(f"task {task_id} was never seen stopping")


def running_task(machine, api, name: str) -> str:
    task_id = start(api, REMOTE, name)
    machine.wait_for_task(api, task_id, {"running"}, timeout=120)
    return task_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    live, takeover, lock_moved = [], [], []
    with postgres() as url, tempfile.TemporaryDirectory(prefix="rosetta-bench-") as home:
        a, b = two_machines((Path(home, "a"), Path(home, "b")), url)
        token = None
        try:
            start_both(a, b)
            token = a.create_user("bench")
            key = remote_lock_key(url)
            machines = {"machine-a": a, "machine-b": b}
            with a.api(token) as api:
                for run in range(args.runs):
                    [holder_name] = wait_for_holder(url, key, timeout=10)
                    holder = next(m for node, m in machines.items() if node in holder_name)

                    task_id = running_task(a, api, f"live-{run}")
                    asked = time.time()
                    api.post(f"/api/tasks/{task_id}/stop").raise_for_status()
                    live.append(stopping_seen(api, task_id) - asked)

                    task_id = running_task(a, api, f"takeover-{run}")
                    killed_wall, killed = time.time(), time.monotonic()
                    holder.kill("controller", signal.SIGKILL)
                    api.post(f"/api/tasks/{task_id}/stop").raise_for_status()
                    wait_for_holder(url, key, timeout=30, unlike=holder_name)
                    lock_moved.append(time.monotonic() - killed)
                    takeover.append(stopping_seen(api, task_id) - killed_wall)
                    holder.start_component("controller")  # it stands by from now on
                    print(
                        f"run {run + 1}: live {live[-1] * 1000:.0f} ms, takeover {takeover[-1] * 1000:.0f} ms "
                        f"(lock moved after {lock_moved[-1] * 1000:.0f} ms)",
                        flush=True,
                    )
        finally:
            if token is None:
                b.stop()
                a.stop()
            else:
                stop_both(a, b, token)
    median_live, median_takeover = statistics.median(live), statistics.median(takeover)
    print(f"\nremote backend {REMOTE}, {args.runs} runs (medians)")
    print(f"  live:      stop asked -> observed and acted on        {median_live * 1000:7.0f} ms")
    print(f"  takeover:  controller killed -> observed by another   {median_takeover * 1000:7.0f} ms")
    print(f"             controller killed -> lock has a new holder {statistics.median(lock_moved) * 1000:7.0f} ms")
    print(f"  takeover / live: {median_takeover / median_live:.1f}x   (target: takeover < 5000 ms)")


if __name__ == "__main__":
    main()
