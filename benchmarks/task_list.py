"""Task lists with a long history: 1,500 finished tasks, the whole list against a page, side by
side in one run.

    .venv/bin/python benchmarks/task_list.py [--tasks 1500] [--runs 5]

Starts its own Rosetta and writes ``--tasks`` finished tasks of one user straight into its database
(each with the four events a real one has; they ended over the last hours, as after a burst). Then,
median of ``--runs`` each:

- **API, whole list** (what `GET /api/tasks` answered before it had pages; approximated by following
  every page at the largest size, 500) against **API, first page** (the default 50);
- **web, whole list** (every page of "All" fetched, as the page rendered them all before) against
  **web, first page**; and the page's poll: the whole list before, the pages it shows now;
- **CLI**: `rosetta task list --all` (every task, following the pages) against `--limit 50`;
- **route table**: the gateway's entries and load time, and how many rows the table held before
  (every task that ended within a day).

Prints bytes and milliseconds, and the ratios whole/page. Never gates CI.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import httpx
from support import own_platform

from tests.e2e.test_http_flow import login

USER, PASSWORD = "historian", "correct horse battery"
ROUTE_TABLE = """
import time
from datetime import timedelta
from django.db.models import Q
from django.utils import timezone
from rosetta.gateway.snapshot import load_route_table
from rosetta.tasks.models import Task
began = time.perf_counter()
table = load_route_table()
took = time.perf_counter() - began
before = Task.objects.filter(Q(finished__isnull=True) | Q(finished__gte=timezone.now() - timedelta(days=1))).count()
print(len(table.routes), before, took)
"""


def timed(fetch) -> tuple[int, float]:
    """Bytes and seconds of one ``fetch`` (which returns the bytes it received)."""
    began = time.perf_counter()
    size = fetch()
    return size, time.perf_counter() - began


def median(fetch, runs: int) -> tuple[int, float]:
    results = [timed(fetch) for _ in range(runs)]
    return results[0][0], statistics.median(seconds for _, seconds in results)


def api_pages(api: httpx.Client, params: dict, every: bool) -> int:
    size, url = 0, "/api/tasks"
    while url:
        answer = api.get(url, params=params).raise_for_status()
        size += len(answer.content)
        url, params = (answer.json()["next"], None) if every else (None, None)
    return size


def web_pages(browser: httpx.Client, every: bool) -> int:
    size, params = 0, {"show": "all"}
    while params:
        page = browser.get("/tasks/", params=params).raise_for_status()
        size += len(page.content)
        older = re.search(r'href="\?show=all&amp;cursor=([\w-]+)" rel="next"', page.text) if every else None
        params = {"show": "all", "cursor": older.group(1)} if older else None
    return size


def polled_urls(browser: httpx.Client) -> list[str]:
    """What the open list page asks the API every few seconds: the pages of the rows it shows."""
    page = browser.get("/tasks/", params={"show": "all"}).raise_for_status().text
    return re.search(r'data-api="([^"]+)"', page).group(1).replace("&amp;", "&").split()


def web_poll(browser: httpx.Client, urls: list[str]) -> int:
    return sum(len(browser.get(url).raise_for_status().content) for url in urls)


def cli(platform, token: str, *args: str) -> int:
    return len(platform.rosetta("task", "list", "--all", *args, token=token).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with own_platform() as platform:
        token = platform.create_user(USER, password=PASSWORD)
        platform.make_finished_tasks(USER, args.tasks, days_ago=0)
        api, browser = platform.api(token), login(platform, USER, PASSWORD)
        api_pages(api, {"limit": 500}, every=True)  # warm-up, untimed
        urls = polled_urls(browser)
        rows = [
            (
                "API GET /api/tasks",
                median(lambda: api_pages(api, {"limit": 500}, every=True), args.runs),
                median(lambda: api_pages(api, {}, every=False), args.runs),
            ),
            (
                "web task list (All)",
                median(lambda: web_pages(browser, every=True), args.runs),
                median(lambda: web_pages(browser, every=False), args.runs),
            ),
            (
                "web list's poll",
                median(lambda: api_pages(browser, {"limit": 500}, every=True), args.runs),
                median(lambda: web_poll(browser, urls), args.runs),
            ),
            (
                "CLI task list --all",
                median(lambda: cli(platform, token), args.runs),
                median(lambda: cli(platform, token, "--limit", "50"), args.runs),
            ),
        ]
        routes, routes_before, load = platform.rosetta("manage", "shell", "-c", ROUTE_TABLE).stdout.split()[-3:]
    print(f"{args.tasks} finished tasks of one user; median of {args.runs} runs")
    print(f"{'':<22}{'whole list':>24}{'a page':>24}{'bytes ×':>10}{'time ×':>9}")
    for name, (whole_size, whole_time), (page_size, page_time) in rows:
        print(
            f"{name:<22}{whole_size:>12,} B {whole_time * 1000:>7.0f} ms"
            f"{page_size:>12,} B {page_time * 1000:>7.0f} ms"
            f"{whole_size / page_size:>10.1f}{whole_time / page_time:>9.1f}"
        )
    print(f"route table: {routes} entries (before: {routes_before}), loaded in {float(load) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
