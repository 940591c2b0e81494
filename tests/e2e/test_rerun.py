"""A record run again: the same image by digest and the same request (secret values, never
recorded, left out and said so); a record whose entry is retired or runs another image now is
refused, with the newest version offered — never another image in silence."""

import json


def test_a_record_runs_again_with_the_same_image_and_request(platform, tmp_path):
    token = platform.create_user("rerunner")
    with platform.api(token) as api:
        first = platform.start_task(api, name="original", environment={"GREETING": "hi", "MY_TOKEN": "s3cret"},
                                    cpus=0.3, memory_mb=96)  # fmt: skip
        platform.wait_for_task(api, first, {"running"})
        api.post(f"/api/tasks/{first}/stop")
        platform.wait_for_task(api, first, {"stopped"})
    record = tmp_path / "record.json"
    record.write_text(platform.rosetta("task", "record", "original", "--json", token=token).stdout)
    again = json.loads(platform.rosetta("task", "start", "--from", str(record), "--wait", "--json", token=token).stdout)
    with platform.api(token) as api:
        task = api.get(f"/api/tasks/{again['id']}").json()
        original = api.get(f"/api/tasks/{first}").json()
        assert task["phase"] == "running" and task["software_digest"] == original["software_digest"]
        assert (task["cpus"], task["memory_mb"], task["resource"]) == (0.3, 96, "local")
        assert task["environment"].get("GREETING") == "hi" and "MY_TOKEN" not in task["environment"]
        said = [event["reason"] for event in task["events"]]
        assert any("Run again from the record of task" in reason and "MY_TOKEN" in reason for reason in said), said
        api.post(f"/api/tasks/{again['id']}/stop")


def test_a_record_of_a_retired_or_changed_entry_is_refused_with_the_newest_offered(platform):
    token = platform.create_user("rerun-refused")
    with platform.api(token) as api:
        for version in ("1", "2"):
            entry = {"name": "mine", "version": version, "image": "localhost/rosetta/hello", "honours_base_port": True}
            added = api.post("/api/software", json=entry)
            assert added.status_code == 201, added.text
        task_id = platform.start_task(api, software="mine:1")
        record = api.get(f"/api/tasks/{task_id}/record").json()
        api.post(f"/api/tasks/{task_id}/stop")

        changed = {**record, "software": {**record["software"], "digest": "sha256:" + "f" * 64}}
        refused = api.post("/api/tasks", json={"from_record": changed})
        assert refused.status_code == 409
        assert "no longer the one recorded" in refused.json()["detail"]
        assert "The newest version you may start is mine:2" in refused.json()["detail"]

        entry = next(e for e in api.get("/api/software", params={"owner": "mine"}).json() if e["version"] == "1")
        assert api.patch(f"/api/software/{entry['id']}", json={"status": "retired"}).status_code == 200
        refused = api.post("/api/tasks", json={"from_record": record})
        assert refused.status_code == 409 and "mine:1 is retired" in refused.json()["detail"]
        assert "mine:2" in refused.json()["detail"]
        assert api.post("/api/tasks", json={"from_record": {"software": "nonsense"}}).status_code == 400
        assert api.post("/api/tasks", json={}).status_code == 422
