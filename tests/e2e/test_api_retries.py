"""Creating is one transaction, and a client's retry with the same Idempotency-Key never makes
a second task — even when the platform's web process dies in the middle of a burst."""

import json
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.instance import ROSETTA

BODY = {"software": "hello", "resource": "local"}


def test_a_retried_start_answers_with_the_first_task(platform):
    token = platform.create_user("retrying")
    with platform.api(token) as api:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        first = api.post("/api/tasks", json={**BODY, "name": "once"}, headers=key)
        again = api.post("/api/tasks", json={**BODY, "name": "once"}, headers=key)
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert [task["name"] for task in platform.list_tasks(api)] == ["once"]

        changed = api.post("/api/tasks", json={**BODY, "name": "twice"}, headers=key)
        assert changed.status_code == 409 and "different request" in changed.json()["detail"]

        for bad in ("", "x" * 256, "ключ".encode(), "tab\tkey"):
            response = api.post("/api/tasks", json=BODY, headers={"Idempotency-Key": bad})
            assert response.status_code == 400 and "Idempotency-Key" in response.json()["detail"], bad
        assert len(platform.list_tasks(api)) == 1


def test_the_same_key_sent_many_times_at_once_makes_one_task(platform):
    token = platform.create_user("impatient")
    key = {"Idempotency-Key": str(uuid.uuid4())}

    def send(_) -> httpx.Response:
        with platform.api(token) as api:
            return api.post("/api/tasks", json={**BODY, "name": "together"}, headers=key)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.json()["id"] for answer in answers}) == 1
    with platform.api(token) as api:
        assert len(platform.list_tasks(api)) == 1


def test_a_token_is_shown_once_even_to_a_retry(platform):
    token = platform.create_user("careful")
    with platform.api(token) as api:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        assert api.post("/api/tokens", json={"name": "laptop"}, headers=key).status_code == 201
        again = api.post("/api/tokens", json={"name": "laptop"}, headers=key)
        assert again.status_code == 409 and "shown only once" in again.json()["detail"]


def test_tasks_survive_the_web_process_dying_mid_burst_and_retries_make_no_duplicates(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("burst")
    keys = [str(uuid.uuid4()) for _ in range(30)]

    def send(n: int) -> int:
        with platform.api(token) as api:
            try:
                return api.post(
                    "/api/tasks", json={**BODY, "name": f"b{n}"}, headers={"Idempotency-Key": keys[n]}, timeout=10
                ).status_code
            except httpx.HTTPError:
                return 0

    with ThreadPoolExecutor(10) as pool:
        sending = pool.map(send, range(30))
        time.sleep(0.3)
        platform.kill("web", signal.SIGKILL)
        first = list(sending)
    assert 0 in first or 503 in first or 502 in first, first  # the kill did land mid-burst
    platform.start_component("web")
    platform.wait_until_up()
    retried = [send(n) if status != 201 else 201 for n, status in enumerate(first)]
    assert set(retried) == {201}, retried
    with platform.api(token) as api:
        tasks = platform.list_tasks(api)
        assert sorted(task["name"] for task in tasks) == sorted(f"b{n}" for n in range(30))
        for task in tasks:
            events = api.get(f"/api/tasks/{task['id']}/events").json()
            assert events and events[0]["reason"].startswith("Requested hello on local"), (task, events)


def test_the_cli_rides_out_a_restart_of_the_platform_without_starting_twice(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("steady")
    platform.kill("web", signal.SIGKILL)  # the platform is restarting when the scientist asks
    cli = subprocess.Popen(
        [*ROSETTA, "task", "start", "hello", "--on", "local", "--name", "steady", "--wait", "--json"],
        env={**platform.env, "ROSETTA_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    platform.start_component("web")
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    assert json.loads(out)["phase"] == "running"
    with platform.api(token) as api:
        assert [task["name"] for task in platform.list_tasks(api)] == ["steady"]
