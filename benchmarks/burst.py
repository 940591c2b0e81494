"""A burst: 100 tasks requested at once by 5 users, then all stopped at once — Rosetta against
the same work done with raw podman, side by side in one run.

    .venv/bin/python benchmarks/burst.py [--tasks 100] [--users 5] [--quotas]

Platform: every user's requests are sent concurrently through the API; timed until every task
answers 200 through the gateway, then every stop is sent at once and timed until every
container is gone. While the start burst is still going on, one more task is requested and at
once stopped: how long until the controller begins that stop ("a stop requested during a burst
begins within 2 s"). Raw: the same `podman run -d` argv the platform's engine builds, four at a
time (the platform's own start concurrency), polling each published port until 200; then
`podman rm -f -t 10`, eight at a time. Prints both and the ratios (target ≤ 1.5×). With
--quotas, the platform's burst runs once more with quotas on (each user's and their group's, none
reached), side by side: the quota check in each start's transaction costs ≤ 1.05×. Never gates CI.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
from support import POLL_INTERVAL, own_platform, raw_start, remove, until_ok

TARGET_RATIO = 1.5
QUOTA_TARGET = 1.05


def raw_burst(platform, count: int) -> tuple[float, float]:
    def start(number: int) -> str:
        with httpx.Client(timeout=5) as client:
            return raw_start(platform, client, f"burst{number}", cpus=0.1, memory_mb=64)

    began = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        names = list(pool.map(start, range(count)))
    started = time.perf_counter() - began
    began = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: platform.podman("rm", "--force", "--time", "10", name), names))
    return started, time.perf_counter() - began


def platform_burst(platform, tokens: list[str], count: int) -> tuple[float, float, float]:
    per_user = count // len(tokens)

    body = {"software": "hello", "resource": "local", "cpus": 0.1, "memory_mb": 64}

    def request(token: str) -> list[tuple[str, str]]:
        with platform.api(token) as api, ThreadPoolExecutor(per_user) as pool:
            answers = pool.map(lambda _: api.post("/api/tasks", json=body).raise_for_status().json(), range(per_user))
            return [(token, task["interface_url"]) for task in answers]

    began = time.perf_counter()
    with ThreadPoolExecutor(len(tokens) + 1) as pool:
        requested = [pool.submit(request, token) for token in tokens]
        stop_delay = pool.submit(stop_during_burst, platform, tokens[0])
        tasks = [task for future in requested for task in future.result()]
        with httpx.Client(timeout=10) as client:
            for token, url in tasks:
                until_ok(client, url, {"Authorization": f"Bearer {token}"})
    started = time.perf_counter() - began

    began = time.perf_counter()
    for token in tokens:
        with platform.api(token) as api, ThreadPoolExecutor(per_user) as pool:
            ids = [task["id"] for task in platform.list_tasks(api, "running")]
            list(pool.map(lambda task_id: api.post(f"/api/tasks/{task_id}/stop").raise_for_status(), ids))
    while platform.containers():
        time.sleep(POLL_INTERVAL)
    return started, time.perf_counter() - began, stop_delay.result()


def stop_during_burst(platform, token: str) -> float:
    """Seconds from a stop request, sent mid-burst, to the controller acting on it."""
    time.sleep(1.0)  # the burst is under way
    with platform.api(token) as api:
        task = (
            api.post(
                "/api/tasks",
                json={
                    "software": "hello",
                    "resource": "local",
                    "name": "stopped-mid-burst",
                    "cpus": 0.1,
                    "memory_mb": 64,
                },
            )
            .raise_for_status()
            .json()
        )
        api.post(f"/api/tasks/{task['id']}/stop").raise_for_status()
        while True:
            events = api.get(f"/api/tasks/{task['id']}/events").json()
            asked = next(e for e in events if e["reason"] == "Stop requested.")
            acted = [e for e in events if e["phase"] in ("stopping", "stopped")]
            if acted:
                return (_time(acted[0]) - _time(asked)).total_seconds()
            time.sleep(POLL_INTERVAL)


def _time(event: dict) -> datetime:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--quotas", action="store_true", help="Also the same burst with quotas on.")
    args = parser.parse_args()

    with own_platform() as platform:
        try:
            tokens = [platform.create_user(f"scientist{n}") for n in range(args.users)]
            raw_start_time, raw_stop_time = raw_burst(platform, args.tasks)
            ours_start, ours_stop, stop_delay = platform_burst(platform, tokens, args.tasks)
            if args.quotas:
                with_quotas = platform_burst(platform, with_quotas_on(platform, args.users, args.tasks), args.tasks)
        finally:
            remove(platform, *[f"rosetta-burst{n}" for n in range(args.tasks)])

    print(f"burst of {args.tasks} tasks by {args.users} users (seconds)")
    print(f"{'':<34}{'raw podman':>12}{'Rosetta':>10}{'ratio':>8}")
    for what, raw, ours in (
        ("all answering 200", raw_start_time, ours_start),
        ("all gone after stopping", raw_stop_time, ours_stop),
    ):
        print(f"{what:<34}{raw:>12.1f}{ours:>10.1f}{ours / raw:>8.2f}")
    met = ours_start / raw_start_time <= TARGET_RATIO and ours_stop / raw_stop_time <= TARGET_RATIO
    print(f"target ≤ {TARGET_RATIO}× raw: {'met' if met else 'NOT met'}")
    print(f"a stop sent during the burst began after {stop_delay:.2f} s (target ≤ 2 s)")
    if args.quotas:
        print(f"{'with quotas on':<34}{'without':>12}{'with':>10}{'ratio':>8}")
        for what, without, with_ in (("all answering 200", ours_start, with_quotas[0]),
                                     ("all gone after stopping", ours_stop, with_quotas[1])):  # fmt: skip
            print(f"{what:<34}{without:>12.1f}{with_:>10.1f}{with_ / without:>8.2f}")
        met = with_quotas[0] / ours_start <= QUOTA_TARGET
        print(f"target ≤ {QUOTA_TARGET}× without: {'met' if met else 'NOT met'}")


def with_quotas_on(platform, users: int, tasks: int) -> list[str]:
    """New users in one group, each with a quota of their own and the group's (none reached)."""
    names = [f"quota-scientist{n}" for n in range(users)]
    tokens = [platform.create_user(name) for name in names]
    platform.rosetta("groups", "add", "burst-lab", *names)
    for name in names:
        platform.rosetta("quotas", "set", "--user", name, "--tasks", str(tasks), "--cpus", "1000")
    platform.rosetta("quotas", "set", "--group", "burst-lab", "--tasks", str(tasks * 2), "--memory", "1000G")
    return tokens


if __name__ == "__main__":
    main()
