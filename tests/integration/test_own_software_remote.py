"""A user's own build runs on another machine: the test bed's SSH host pulls it from the
platform's registry by digest (testbed/up)."""

from __future__ import annotations

import time

import pytest

from tests.instance import Platform, free_port
from tests.integration.test_remote import bed, on

CONTAINERFILE = "FROM localhost/rosetta/hello\nENV BUILT_BY=ada\n"


@pytest.fixture
def remote_platform(tmp_path):
    described = bed()
    platform = Platform(tmp_path / "rosetta", settings={
        "ROSETTA_TESTBED_DIR": "/var/lib/rosetta-testbed",
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    })  # fmt: skip
    platform.set_up()
    platform.start()
    yield platform
    platform.stop()


def test_a_built_image_runs_on_an_ssh_host_by_its_registry_digest(remote_platform):
    platform = remote_platform
    token = platform.create_user("ada")
    with platform.api(token) as api:
        build = api.post("/api/software/builds", json={"name": "adatool", "containerfile": CONTAINERFILE}).json()
        deadline = time.monotonic() + 120
        while (entry := _entry(api, build["id"])) is None or entry["registry_state"] != "pushed":
            assert time.monotonic() < deadline, f"not built and copied in time: {entry}"
            time.sleep(0.3)
        assert {"resource": "testbed-host", "ready": True, "note": ""} in entry["runs_on"]

        task = api.post("/api/tasks", json={"software": "adatool:1", "resource": "testbed-host"}).json()
        assert task["software_digest"] == entry["registry_digest"]  # what the host runs
        task = platform.wait_for_task(api, task["id"], {"running", "failed", "exited"}, timeout=120)
        assert task["phase"] == "running", task["events"]
        with platform.task_client(task["id"], token) as interface:
            assert interface.get("/").status_code == 200
        seen = on("rstb-host", "podman", "exec", f"rosetta-{task['id']}", "env").stdout
        assert "BUILT_BY=ada" in seen.splitlines()
        running = on("rstb-host", "podman", "ps", "--format", "{{.Image}}").stdout
        assert f"/u{_owner_id(entry)}/adatool@{entry['registry_digest']}" in running
        api.post(f"/api/tasks/{task['id']}/stop")
        platform.wait_for_task(api, task["id"], {"stopped"}, timeout=60)


def _entry(api, build_id: int) -> dict | None:
    build = api.get(f"/api/software/builds/{build_id}").json()
    assert build["state"] != "failed", build["log"]
    return api.get(f"/api/software/{build['software']}").json() if build["software"] else None


def _owner_id(entry: dict) -> str:
    return entry["image"].split("/u", 1)[1].split("/", 1)[0]
