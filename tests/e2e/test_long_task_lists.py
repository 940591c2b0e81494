"""A platform that has run for a while: 1,500 finished tasks beside a few real ones. The API and
the CLI list every one exactly once while tasks are being started; the web page and every API
answer stay small; the gateway still routes the running task. Against a real `rosetta run`."""

import json
import re
import subprocess

from tests.e2e.test_http_flow import HELLO, login
from tests.instance import ROSETTA

FINISHED = 1500
PAGE_BYTES = 150_000  # a page of the list, API or web, however long the history
PASSWORD = "correct horse battery"
SMALL = {"cpus": 0.1, "memory_mb": 64}


def ids(tasks: list[dict]) -> list[str]:
    return [task["id"] for task in tasks]


def test_every_task_listed_once_a_page_at_a_time_while_tasks_start(fresh_platform):
    platform = fresh_platform
    platform.start()
    token = platform.create_user("ada", password=PASSWORD)
    api = platform.api(token)
    # A task that has run since long before the history below, and one that ran and was stopped.
    running = platform.start_task(api, name="long-running", **SMALL)
    platform.wait_for_task(api, running, {"running"})
    ended = platform.start_task(api, name="ended", **SMALL)
    platform.wait_for_task(api, ended, {"running"})
    assert api.post(f"/api/tasks/{ended}/stop").status_code == 202
    platform.wait_for_task(api, ended, {"stopped"})
    platform.make_finished_tasks("ada", FINISHED)
    before = set(ids(platform.list_tasks(api)))
    assert len(before) == FINISHED + 2

    # The API, page after page, while a task is started between every two pages.
    listed, started, url, params = [], [], "/api/tasks", {"limit": 300}
    while url:
        answer = api.get(url, params=params)
        assert answer.status_code == 200 and len(answer.content) < 300 * 1200, len(answer.content)
        page = answer.json()
        listed += page["items"]
        url, params = page["next"], None
        if url:
            started.append(platform.start_task(api, **SMALL))
    assert len(ids(listed)) == len(set(ids(listed))) == len(before) and set(ids(listed)) == before
    assert len(started) == 5
    first = api.get("/api/tasks")
    assert len(first.content) < PAGE_BYTES and ids(first.json()["items"])[:5] == started[::-1]

    # The CLI follows the pages while tasks start: each task once, none of those before missed.
    cli = subprocess.Popen(
        [*ROSETTA, "task", "list", "--all", "--json"],
        env={**platform.env, "ROSETTA_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    meanwhile = [platform.start_task(api, **SMALL) for _ in range(3)]
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    shown = ids(json.loads(out))
    assert len(shown) == len(set(shown)) and before | set(started) <= set(shown)
    assert set(shown) <= before | set(started) | set(meanwhile)
    newest = platform.rosetta("task", "list", "--all", "--limit", "20", token=token).stdout.splitlines()
    assert newest[0].startswith("NAME") and len(newest) == 1 + 20 + 1
    assert newest[-1] == "The newest 20 are shown; older ones: --limit 40, or leave --limit out for all."
    active = platform.rosetta("task", "list", "--json", token=token).stdout
    assert set(ids(json.loads(active))) == {running, *started, *meanwhile}

    # The web list: every active task first, on the first page, then finished ones a page at a time.
    browser = login(platform, "ada", PASSWORD)
    page = browser.get("/tasks/?show=all")
    assert page.status_code == 200 and len(page.content) < PAGE_BYTES, len(page.content)
    rows = re.findall(r'<tr data-task-id="(\w+)" data-phase="(\w+)"', page.text)
    assert [task for task, _ in rows[:9]] == [*meanwhile[::-1], *started[::-1], running]
    finished_rows = [task for task, phase in rows[9:] if phase in ("stopped", "exited", "failed")]
    while older := re.search(r'href="\?show=all&amp;cursor=([\w-]+)" rel="next"', page.text):
        page = browser.get("/tasks/", params={"show": "all", "cursor": older.group(1)})
        assert page.status_code == 200 and len(page.content) < PAGE_BYTES, len(page.content)
        finished_rows += re.findall(r'<tr data-task-id="(\w+)"', page.text)
    assert len(finished_rows) == len(set(finished_rows)) == FINISHED + 1 and ended in finished_rows

    # The gateway routes the running task; the one that just ended says so; one ended long ago
    # (outside its small route table) is not there.
    assert HELLO in platform.task_client(running, token).get("/").text
    just_ended = platform.task_client(ended, token).get("/", headers={"Accept": "text/html"})
    assert just_ended.status_code == 503 and "has stopped" in just_ended.text
    long_ago = next(task for task in finished_rows if task != ended)
    long_ago = platform.task_client(long_ago, token).get("/", headers={"Accept": "text/html"})
    assert long_ago.status_code == 404 and "No such task" in long_ago.text
