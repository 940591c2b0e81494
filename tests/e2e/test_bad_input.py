"""Bad input gets a clear 4xx (or a failed task with the engine's words), never a 500 or a
half-created container."""

import httpx
import pytest


@pytest.fixture(scope="module")
def api(platform):
    token = platform.create_user("mallory")
    with platform.api(token) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"software": "nope", "resource": "local"}, 404, "no software called 'nope'"),
        ({"software": "hello", "resource": "mars"}, 404, "no computing resource called 'mars'"),
        ({"software": "hello", "resource": "local", "cpus": 0}, 400, "cpus must be between"),
        ({"software": "hello", "resource": "local", "cpus": 10_000}, 400, "cpus must be between"),
        ({"software": "hello", "resource": "local", "memory_mb": 1}, 400, "memory must be between"),
        ({"software": "hello", "resource": "local", "memory_mb": 10**9}, 400, "memory must be between"),
        ({"software": "hello", "resource": "local", "name": "x" * 64}, 422, "name"),
        ({"software": "hello", "resource": "local", "name": "bad name; rm -rf /"}, 400, "not a valid task name"),
        ({"software": "h" * 10_000, "resource": "local"}, 422, "software"),
        (
            {"software": "hello", "resource": "local", "environment": {"A;B": "x"}},
            400,
            "not a valid environment variable name",
        ),
        (
            {"software": "hello", "resource": "local", "environment": {"$(id)": "x"}},
            400,
            "not a valid environment variable name",
        ),
        ({"software": "hello", "resource": "local", "environment": {"BASE_PORT": "1"}}, 400, "set by Rosetta"),
        ({"software": "hello", "resource": "local", "environment": {"A": "two\nlines"}}, 400, "control character"),
        ({"software": "hello", "resource": "local", "environment": {"A": 5}}, 422, "environment"),
        ({"software": "hello", "resource": "local", "cpus": "many"}, 422, "cpus"),
        ({"resource": "local"}, 422, "software"),
        # Nothing on a resource without a batch scheduler would honour a partition or a time limit.
        (
            {"software": "hello", "resource": "local", "partition": "debug"},
            400,
            "local has no batch scheduler: it takes no partition or time limit",
        ),
        ({"software": "hello", "resource": "local", "time_limit_minutes": 30}, 400, "Leave out the time limit"),
        # A misspelt field is refused, not ignored (here the limit would have been the default, unsaid).
        (
            {"software": "hello", "resource": "local", "time_limit": "-5"},
            422,
            "Invalid request: time_limit: not a field this request takes",
        ),
    ],
)
def test_refused_with_a_clear_message(api, platform, body, status, words):
    before = len(platform.list_tasks(api))
    response = api.post("/api/tasks", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert len(platform.list_tasks(api)) == before


def test_every_body_refuses_fields_it_does_not_take(api, platform):
    task_id = platform.start_task(api, name="extra-fields")
    entry = api.post("/api/software", json={"name": "extras", "image": "localhost/rosetta/hello"}).json()
    for method, path, body in (
        ("POST", f"/api/tasks/{task_id}/stop", {"reasn": "typo"}),
        ("POST", "/api/tokens", {"name": "x", "expires_days": 7}),
        ("PATCH", f"/api/software/{entry['id']}", {"descripton": "typo"}),
        ("POST", "/api/software", {"name": "extras2", "image": "localhost/rosetta/hello", "port": 80}),
        ("POST", "/api/storages/home/folders", {"path": "x", "parents": True}),
    ):
        response = api.request(method, path, json=body)
        assert response.status_code == 422, (path, response.text)
        assert "not a field this request takes" in response.json()["detail"], response.text
    assert api.get(f"/api/tasks/{task_id}").json()["desired"] == "running"  # the stop was not carried out
    api.delete(f"/api/tasks/{task_id}")


def test_malformed_and_oversized_bodies(api):
    assert api.post("/api/tasks", content=b"{not json", headers={"Content-Type": "application/json"}).status_code in (
        400,
        422,
    )
    huge = {"software": "hello", "resource": "local", "environment": {f"V{i}": "x" * 4000 for i in range(1000)}}
    response = api.post("/api/tasks", json=huge)
    assert 400 <= response.status_code < 500, response.text


def test_duplicate_name_is_a_conflict(api, platform):
    task_id = platform.start_task(api, name="unique-one")
    response = api.post("/api/tasks", json={"software": "hello", "resource": "local", "name": "unique-one"})
    assert response.status_code == 409 and "an active task called 'unique-one'" in response.json()["detail"]
    api.delete(f"/api/tasks/{task_id}")


def test_bad_software_entries(api):
    for body, words in [
        ({"name": "evil", "image": "--privileged"}, "not a valid image reference"),
        ({"name": "evil", "image": "x", "environment": {"A B": "1"}}, "not a valid environment"),
        ({"name": "Evil Name", "image": "x"}, "name"),
        ({"name": "evil", "image": "x", "interface_port": 70000}, "interface_port"),
    ]:
        response = api.post("/api/software", json=body)
        assert 400 <= response.status_code < 500 and words in response.text, response.text
    assert api.post("/api/software", json={"name": "shared", "image": "x", "visibility": "everyone"}).status_code == 403


def test_a_change_sent_with_nulls_leaves_those_fields_as_they_are(api):
    entry = api.post(
        "/api/software", json={"name": "nulls", "image": "localhost/rosetta/hello", "environment": {"A": "1"}}
    )
    entry = entry.json()
    nulls = dict.fromkeys(["environment", "interface_port", "honours_base_port", "visibility", "group", "description"])
    changed = api.patch(f"/api/software/{entry['id']}", json={**nulls, "status": "hidden"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "hidden" and changed.json()["environment"] == {"A": "1"}


def test_shell_metacharacters_in_values_reach_the_program_literally(api, platform):
    value = "$(touch /tmp/pwned-by-rosetta); `id` | rm -rf / && echo 'quoted' \"double\" *"
    task_id = platform.start_task(api, name="literal", environment={"QUERY": value})
    platform.wait_for_task(api, task_id, {"running"})
    token = api.headers["Authorization"].removeprefix("Bearer ")
    assert platform.task_client(task_id, token).get("/").status_code == 200
    env = platform.podman("exec", f"rosetta-{task_id}", "env")
    assert f"QUERY={value}" in env.splitlines()
    api.post(f"/api/tasks/{task_id}/stop")


def test_unknown_routes_and_methods_are_4xx(api):
    assert api.get("/api/tasks/doesnotexist").status_code == 404
    assert api.delete("/api/tasks/doesnotexist").status_code == 404
    assert api.put("/api/tasks").status_code == 405
    assert api.get("/api/tasks/x/logs").status_code == 404


def test_no_credentials_is_401(platform):
    assert httpx.get(f"{platform.url}/api/tasks").status_code == 401
    assert httpx.get(f"{platform.url}/api/tasks", headers={"Authorization": "Bearer rst_wrong"}).status_code == 401
