"""Quotas through the real stack: a burst of starts by one user never gets past their quota, a
group's quota counts its members together, and users see their quotas before they bite."""

from tests.checks import burst_of_starts

SMALL = {"cpus": 0.1, "memory_mb": 32}


def test_a_burst_of_starts_stops_exactly_at_the_quota(platform):
    token = platform.create_user("bursty")
    platform.rosetta("quotas", "set", "--user", "bursty", "--resource", "local", "--tasks", "10")

    statuses = burst_of_starts(platform, token, 100, **SMALL)
    assert statuses.count(201) == 10 and statuses.count(409) == 90, statuses
    with platform.api(token) as api:
        refusal = api.post("/api/tasks", json={"software": "hello", "resource": "local", **SMALL}).json()["detail"]
        assert "quota of user bursty on local" in refusal and "10 of 10 tasks run already" in refusal
    with platform.api(token) as api:
        active = platform.list_tasks(api, phase="active")
        assert len(active) == 10  # never a half-created task for a refused start
        listed = platform.rosetta("resources", "list", token=token).stdout
        assert "local: 10 of 10 tasks (quota of user bursty on local)" in listed
        api.post(f"/api/tasks/{active[0]['id']}/stop")
        platform.wait_for_task(api, active[0]["id"], {"stopped"})
        assert api.post("/api/tasks", json={"software": "hello", "resource": "local", **SMALL}).status_code == 201
        for task in platform.list_tasks(api, phase="active"):
            api.post(f"/api/tasks/{task['id']}/stop")
    platform.rosetta("quotas", "remove", "--user", "bursty", "--resource", "local")


def test_a_groups_quota_counts_its_members_together(platform):
    ada, bo = platform.create_user("q-ada"), platform.create_user("q-bo")
    platform.rosetta("groups", "add", "q-lab", "q-ada", "q-bo")
    platform.rosetta("quotas", "set", "--group", "q-lab", "--cpus", "0.5", "--memory", "1G")
    listed = platform.rosetta("quotas", "list").stdout
    assert "group q-lab" in listed and "0 of 0.5 CPUs, 0M of 1G memory" in listed
    with platform.api(ada) as first, platform.api(bo) as second:
        kept = platform.start_task(first, cpus=0.3, memory_mb=64)
        refused = second.post("/api/tasks", json={"software": "hello", "resource": "local", "cpus": 0.3})
        assert refused.status_code == 409
        assert "quota of group q-lab on all resources (0.3 of 0.5 CPUs in use; this task asks 0.3)" in refused.text
        assert second.get("/api/resources").json()[0]["quotas"] == [
            "0.3 of 0.5 CPUs, 64M of 1G memory (quota of group q-lab on all resources)"
        ]
        fits = second.post("/api/tasks", json={"software": "hello", "resource": "local", "cpus": 0.2, "memory_mb": 64})
        assert fits.status_code == 201, fits.text
        for client, task_id in ((first, kept), (second, fits.json()["id"])):
            client.post(f"/api/tasks/{task_id}/stop")
    platform.rosetta("quotas", "remove", "--group", "q-lab")
