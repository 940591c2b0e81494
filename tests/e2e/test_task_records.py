"""A task's record: what it ran, as one document, through the API, the CLI and the page; kept
when the task is deleted from the list (to its owner only) until an operator purges it."""

import re


def test_a_record_says_what_ran_and_outlives_the_tasks_deletion(platform):
    token = platform.create_user("recorder")
    other = platform.create_user("record-stranger")
    environment = {"GREETING": "hi", "API_TOKEN": "do-not-keep", "DB_PASSWORD": "nor-this"}
    with platform.api(token) as api:
        task_id = platform.start_task(api, name="remembered", environment=environment, cpus=0.5, memory_mb=128)
        task = platform.wait_for_task(api, task_id, {"running"})
        record = api.get(f"/api/tasks/{task_id}/record").json()
        assert record["task"] == {"id": task_id, "name": "remembered", "owner": "recorder"}
        assert record["software"]["name"] == "hello" and record["software"]["digest"] == task["software_digest"]
        assert record["software"]["digest"].startswith("sha256:")
        assert record["resource"]["name"] == "local" and record["resource"]["engine"] == "podman"
        assert record["request"]["cpus"] == 0.5 and record["request"]["memory_mb"] == 128
        kept_environment = record["request"]["environment"]
        assert kept_environment["GREETING"] == "hi"
        assert "do-not-keep" not in str(record) and "nor-this" not in str(record)
        assert set(kept_environment) >= set(environment)  # the names stay
        assert record["times"]["started"] and record["outcome"]["phase"] == "running"
        assert re.fullmatch(r"\d+\.\d+.*", record["rosetta"])
        assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
        platform.wait_for_task(api, task_id, {"stopped"})
        assert api.delete(f"/api/tasks/{task_id}").status_code == 202
        assert api.get(f"/api/tasks/{task_id}").status_code == 404
        kept = api.get("/api/tasks/remembered/record").json()  # by its name, once deleted
        assert kept["task"]["id"] == task_id and kept["outcome"]["phase"] == "stopped"
        assert kept["outcome"]["reason"] and kept["times"]["ended"]
    with platform.api(other) as stranger:
        assert stranger.get(f"/api/tasks/{task_id}/record").status_code == 404
    said = platform.rosetta("task", "record", "remembered", token=token).stdout
    assert "hello:" in said and "outcome:     stopped" in said and "API_TOKEN=(secret: not recorded)" in said
    assert task_id in platform.rosetta("records", "list", "--user", "recorder").stdout
    assert "Purged 1 record." in platform.rosetta("records", "purge", "--user", "recorder", "--yes").stdout
    with platform.api(token) as api:
        assert api.get(f"/api/tasks/{task_id}/record").status_code == 404
