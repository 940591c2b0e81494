"""Start latency: Rosetta's API request → first 200 through the gateway, against raw
`podman run -d` → first 200 on the published port. Side by side in one run, alternating.

    .venv/bin/python benchmarks/start_latency.py [--runs 10]

Prints both distributions, the platform's overhead at the median and where its time goes
(from the task's own events). Target: overhead ≤ 150 ms at the median. Never gates CI.

The tasks mount the defaults: the user's home storage is their home, so they run in the user's
own id range. `--first-starts N` also times N users' very first task (the first use of that range
with the image, which podman prepares once per user and image), against a first task with no
storage (a fresh automatic range, as every task without storages gets).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime
from itertools import pairwise

import httpx
from support import own_platform, raw_start, remove, until_ok

TARGET_OVERHEAD_MS = 150


def raw_podman_start(platform, client: httpx.Client, number: int) -> float:
    started = time.perf_counter()
    name = raw_start(platform, client, f"bench{number}")
    elapsed = time.perf_counter() - started
    remove(platform, name)
    return elapsed


def platform_start(platform, client: httpx.Client, api: httpx.Client, token: str, **request) -> tuple[float, dict]:
    started = time.perf_counter()
    task = api.post("/api/tasks", json={"software": "hello", "resource": "local", **request}).raise_for_status().json()
    until_ok(client, task["interface_url"], headers={"Authorization": f"Bearer {token}"})
    elapsed = time.perf_counter() - started
    events = api.get(f"/api/tasks/{task['id']}/events").json()
    deadline = time.monotonic() + 10
    while len(events) < 4 and time.monotonic() < deadline:  # the gateway may answer before "running" is written
        time.sleep(0.05)
        events = api.get(f"/api/tasks/{task['id']}/events").json()
    api.delete(f"/api/tasks/{task['id']}")  # stops it first; outside the timed part
    while api.get(f"/api/tasks/{task['id']}").status_code != 404:
        time.sleep(0.05)
    return elapsed, events


def step_durations(events: list[dict]) -> dict[str, float]:
    """Milliseconds between the task's events: requested → launching → starting → running."""
    times = [datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp() for event in events[:4]]
    names = ["request→launch", "launch→container up", "up→interface answered"]
    return {name: (later - earlier) * 1000 for name, (earlier, later) in zip(names, pairwise(times), strict=True)}


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return f"{name:<22}{statistics.median(ms):>9.1f}{p90:>9.1f}{ms[0]:>9.1f}{ms[-1]:>9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--first-starts", type=int, default=0, help="new users whose first task is timed")
    args = parser.parse_args()
    firsts: dict[str, list[float]] = {"home (own range)": [], "no storage (auto range)": []}

    with own_platform() as platform:
        token = platform.create_user("bench")
        with httpx.Client(timeout=10) as client, platform.api(token) as api:
            raw_podman_start(platform, client, 0)  # warm-up, untimed
            platform_start(platform, client, api, token)
            raw, through_platform, steps = [], [], []
            for number in range(1, args.runs + 1):
                raw.append(raw_podman_start(platform, client, number))
                elapsed, events = platform_start(platform, client, api, token)
                through_platform.append(elapsed)
                steps.append(step_durations(events))
            for number in range(args.first_starts):
                for kind, request in (("home (own range)", {}), ("no storage (auto range)", {"storages": []})):
                    new_token = platform.create_user(f"first{number}-{'home' if not request else 'bare'}")
                    with platform.api(new_token) as new_api:
                        firsts[kind].append(platform_start(platform, client, new_api, new_token, **request)[0])

    print(f"start latency, {args.runs} runs each, alternating (ms)")
    print(f"{'':<22}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}")
    print(summary("podman run + poll", raw))
    print(summary("Rosetta API + gateway", through_platform))
    overhead = (statistics.median(through_platform) - statistics.median(raw)) * 1000
    print(
        f"\nplatform overhead at the median: {overhead:.1f} ms "
        f"(ratio {statistics.median(through_platform) / statistics.median(raw):.2f}); "
        f"target ≤ {TARGET_OVERHEAD_MS} ms: {'met' if overhead <= TARGET_OVERHEAD_MS else 'NOT met'}"
    )
    print("where the platform's time goes (median of the task's own events, ms):")
    for name in steps[0]:
        print(f"  {name:<24}{statistics.median(s[name] for s in steps):>8.1f}")
    if args.first_starts:
        print(f"\na user's first task, {args.first_starts} users each (ms)")
        print(f"{'':<22}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}")
        for kind, seconds in firsts.items():
            print(summary(kind[:22], seconds))


if __name__ == "__main__":
    main()
