"""API tokens do only what they were made for: a read-only token changes nothing through any
operation of the API (every one, from the OpenAPI schema), opens no task, and no token makes one
that may do more than itself; a staff member's token acts as staff only with the admin scope."""

import re

import httpx

PLACEHOLDER = re.compile(r"\{[^}]+\}")
UNSAFE = {"post", "put", "patch", "delete"}


def make_token(api: httpx.Client, name: str, *scopes: str) -> str:
    response = api.post("/api/tokens", json={"name": name, "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    assert response.json()["scopes"] == list(scopes)
    return response.json()["token"]


def detail_of(answer: httpx.Response) -> str:
    """An error's words (JSON errors say them in "detail"); "" for anything else."""
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return ""
    body = answer.json()
    return str(body.get("detail", "")) if isinstance(body, dict) else ""


def test_a_read_only_token_reads_everything_and_changes_nothing(platform):
    full = platform.create_user("scoped-reader")
    with platform.api(full) as api:
        read_only = make_token(api, "look", "read")
        task_id = platform.start_task(api, name="kept")
        operations = api.get("/api/openapi.json").json()["paths"]
    changes = 0
    with platform.api(read_only) as reader:
        for template, methods in operations.items():
            # Real names where there are some: a refusal must come from the scope, not from a miss.
            path = template.replace("{task_id}", task_id).replace("{name}", "home")
            path = PLACEHOLDER.sub("1", path)
            for method in methods:
                answer = reader.request(method.upper(), path, json={})
                said = detail_of(answer)
                if method in UNSAFE:
                    changes += 1
                    assert answer.status_code == 403, f"{method.upper()} {path}: {answer.status_code} {answer.text}"
                    assert "scope" in said, said
                else:
                    assert answer.status_code != 403 or "scope" not in said, f"GET {path}: {said}"
        assert changes >= 20  # every kind of change the API offers was tried
        assert reader.get(f"/api/tasks/{task_id}").json()["desired"] == "running"  # nothing was stopped
        assert reader.get("/api/storages/home/entries").status_code == 200
    with platform.api(full) as api:
        platform.wait_for_task(api, task_id, {"running"})
        with platform.task_client(task_id, read_only) as task:
            assert task.get("/").status_code in (401, 403)  # its interface runs code: not for a reader
        with platform.task_client(task_id, full) as task:
            assert task.get("/").status_code == 200
        api.post(f"/api/tasks/{task_id}/stop")


def test_each_token_changes_only_its_own_part_and_makes_no_broader_token(platform):
    full = platform.create_user("scoped-worker")
    with platform.api(full) as api:
        tasks_only = make_token(api, "runner", "read", "tasks")
        files_only = make_token(api, "writer", "files")
    with platform.api(tasks_only) as runner:
        refused = runner.put("/api/storages/home/content", params={"path": "a.txt"}, content=b"x")
        assert refused.status_code == 403 and "'files' scope" in refused.json()["detail"]
        broader = runner.post("/api/tokens", json={"name": "more", "scopes": ["tasks", "files"]})
        assert broader.status_code == 403 and "files" in broader.json()["detail"]
        task_id = platform.start_task(runner, name="by-runner")
        assert runner.post(f"/api/tasks/{task_id}/stop").status_code == 202
    with platform.api(files_only) as writer:
        assert writer.put("/api/storages/home/content", params={"path": "a.txt"}, content=b"x").status_code == 201
        refused = writer.post("/api/tasks", json={"software": "hello", "resource": "local"})
        assert refused.status_code == 403 and "'tasks' scope" in refused.json()["detail"]
        assert writer.get("/api/tasks").status_code == 403  # files only: not even reading
    with platform.api(full) as api:
        assert api.post("/api/tokens", json={"name": "x", "scopes": ["admin"]}).status_code == 400  # not staff
        assert api.post("/api/tokens", json={"name": "y", "scopes": ["root"]}).status_code == 422


def test_staff_tokens_act_as_staff_only_with_the_admin_scope(platform):
    owner = platform.create_user("scoped-owner")
    staff = platform.create_user("scoped-staff", admin=True)
    with platform.api(owner) as api:
        task_id = platform.start_task(api, name="theirs")
    with platform.api(staff) as api:
        as_user = make_token(api, "daily", "read", "tasks")
        as_staff = make_token(api, "operating", "read", "tasks", "admin")
    with platform.api(owner) as api:
        platform.wait_for_task(api, task_id, {"running"})
    with platform.task_client(task_id, as_user) as task:
        assert task.get("/").status_code == 403  # the gateway too: no staff powers without admin
    with platform.task_client(task_id, as_staff) as task:
        assert task.get("/").status_code == 200
    with platform.api(as_user) as api:
        assert api.get(f"/api/tasks/{task_id}").status_code == 404
        assert api.post(f"/api/tasks/{task_id}/stop").status_code == 404
        assert api.post("/api/resources", json={"name": "elsewhere"}).status_code == 403
    with platform.api(as_staff) as api:
        assert api.get(f"/api/tasks/{task_id}").json()["id"] == task_id
        assert api.post(f"/api/tasks/{task_id}/stop", json={"reason": "maintenance"}).status_code == 202


def test_tokens_from_the_command_line(platform):
    full = platform.create_user("scoped-cli")
    made = platform.rosetta("tokens", "create", "ro", "--scope", "read", "--expires", "30d", token=full)
    read_only = made.stdout.strip()
    assert read_only.startswith("rst_") and "may: read; until" in made.stderr
    listed = platform.rosetta("tokens", "list", token=full).stdout
    line = next(line for line in listed.splitlines() if line.startswith("ro "))
    assert " read " in f"{line} " and "never" in line  # scopes, and not used yet
    refused = platform.rosetta("task", "start", "hello", token=read_only, check=False)
    assert refused.returncode == 1 and "'tasks' scope" in refused.stderr
    assert "revoked" in platform.rosetta("tokens", "revoke", "ro", token=full).stdout
    with platform.api(read_only) as api:
        assert api.get("/api/me").status_code == 401
