"""Whatever a user's id, their tasks that mount storages on this machine run in host ids of their
own, inside the region kept for users' files (rosetta.storage.ids): never another user's, never
podman's automatic ranges or the builds', never past the largest id. Ids only grow as users come
and go; before, user N had 10^9 + N × 65,536 onwards, so user 17,509 shared podman's automatic
ranges and every user from 50,277 on could not start a task with a storage at all."""

import json
import subprocess
from pathlib import Path


def user_with_id(platform, pk: int, name: str) -> str:
    """A user whose id is ``pk`` (the next after one made with ``pk - 1``); their API token."""
    platform.rosetta("manage", "shell", "-c", (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user('before-{name}', id={pk - 1})"
    ))  # fmt: skip
    token = platform.create_user(name)
    shown = platform.rosetta(
        "manage", "shell", "-c",
        f"from django.contrib.auth import get_user_model; print(get_user_model().objects.get(username='{name}').pk)",
    )  # fmt: skip
    assert int(shown.stdout.split()[-1]) == pk
    return token


def host_ids(platform, task_id: str) -> range:
    """The host ids the task's user namespace maps to."""
    [container] = json.loads(platform.podman("inspect", f"rosetta-{task_id}"))
    with open(f"/proc/{container['State']['Pid']}/uid_map") as uid_map:
        [(inside, outside, count)] = [tuple(map(int, line.split())) for line in uid_map]
    assert inside == 0
    return range(outside, outside + count)


def test_users_with_any_id_get_host_ids_of_their_own_and_working_storages(platform):
    tokens = {"small": platform.create_user("ids-small")}
    tokens["17509"] = user_with_id(platform, 17509, "ids-17509")
    tokens["60001"] = user_with_id(platform, 60001, "ids-60001")
    ranges, tasks = {}, {}
    for who, token in tokens.items():
        with platform.api(token) as api:
            api.put("/api/storages/home/content", params={"path": "notes.txt"}, content=b"from the browser\n")
            tasks[who] = platform.start_task(api, name="with-home", storages=["home"], cpus=0.5, memory_mb=128)
            task = platform.wait_for_task(api, tasks[who], {"running", "failed"}, timeout=90)
            assert task["phase"] == "running", task["events"]
            append = "echo from the task >> /home/rosetta/notes.txt"
            wrote = subprocess.run(["podman", "exec", f"rosetta-{tasks[who]}", "sh", "-c", append],
                                   env=platform.podman_env, capture_output=True, text=True)  # fmt: skip
            assert wrote.returncode == 0, wrote.stderr  # the platform's file is the task's to change...
            notes = api.get("/api/storages/home/content", params={"path": "notes.txt"}).text
            assert notes == "from the browser\nfrom the task\n"  # ...and the file manager sees what it wrote
        ranges[who] = host_ids(platform, tasks[who])
    with platform.api(tokens["small"]) as api:
        plain = platform.start_task(api, name="no-storage", storages=[])
        platform.wait_for_task(api, plain, {"running"})
    ranges["automatic"] = host_ids(platform, plain)  # podman's own choice, for a task without storages

    region = range(1_000_000_000, 1_000_000_000 + 17509 * 65536)  # the default, as scripts/setup.sh reserves it
    for who in tokens:
        assert ranges[who][0] in region and ranges[who][-1] in region, who
        others = [ranges[other] for other in ranges if other != who]
        assert not any(overlaps(ranges[who], other) for other in others), who
        for line in Path("/etc/subuid").read_text().split():  # podman's automatic ranges, the builds', accounts'
            name, start, count = line.split(":")
            if name != "rosetta-storage":
                assert not overlaps(ranges[who], range(int(start), int(start) + int(count))), line


def overlaps(one: range, other: range) -> bool:
    return one.start < other.stop and other.start < one.stop


def test_a_user_beyond_the_regions_capacity_is_refused_in_plain_words(fresh_platform):
    """Ranges are given to users as they first use storages here, and a full region says so."""
    fresh_platform.settings["ROSETTA_STORAGE_ID_COUNT"] = str(2 * 65536)  # room for two users
    fresh_platform.start()
    for name in ("first", "second", "third"):
        with fresh_platform.api(fresh_platform.create_user(f"full-{name}")) as api:
            put = api.put("/api/storages/home/content", params={"path": "a.txt"}, content=b"data\n")
            if name != "third":
                assert put.status_code == 201, put.text
                continue
            refused = "Every range of host ids this machine keeps for users' files is taken (2 users): ask an operator."
            assert put.status_code == 503 and put.json()["detail"] == refused
            task = api.post("/api/tasks", json={"software": "hello", "resource": "local", "storages": ["home"]})
            assert task.status_code == 400 and task.json()["detail"] == refused
            # Without storages, no host ids of their own are needed.
            assert fresh_platform.start_task(api, name="no-storage", storages=[])


def test_the_platform_does_not_start_with_a_region_that_overlaps_podmans_automatic_ranges(fresh_platform):
    fresh_platform.settings["ROSETTA_STORAGE_ID_COUNT"] = str(20000 * 65536)  # past 2^31 - 1
    for component in ("controller", "run"):
        refused = fresh_platform.rosetta(component, check=False, timeout=60)
        assert refused.returncode == 1, refused.stderr
        assert "overlaps podman's automatic ranges, the ids /etc/subuid gives 'containers'" in refused.stderr
