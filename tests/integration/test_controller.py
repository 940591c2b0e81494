"""The controller against real podman: restarts, containers vanishing, exits, timeouts."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from tests.checks import assert_legal


def test_controller_restart_reattaches_without_losing_or_duplicating(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("grace")
    with platform.api(token) as api:
        running = [platform.start_task(api, name=f"keep-{i}") for i in range(2)]
        doomed = platform.start_task(api, name="to-stop")
        for task_id in [*running, doomed]:
            platform.wait_for_task(api, task_id, {"running"})
        before = platform.container_ids()
        assert len(before) == 3

        platform.kill("controller")  # SIGKILL: no chance to tidy up
        # While it is away, users keep asking for things; they are written down, not lost.
        assert api.post(f"/api/tasks/{doomed}/stop").status_code == 202
        late = platform.start_task(api, name="while-down")
        time.sleep(1.5)
        assert api.get(f"/api/tasks/{late}").json()["phase"] == "created"

        platform.start_component("controller")
        platform.wait_for_task(api, doomed, {"stopped"})
        platform.wait_for_task(api, late, {"running"})
        for task_id in running:
            task = api.get(f"/api/tasks/{task_id}").json()
            assert task["phase"] == "running", task
            assert [e["phase"] for e in task["events"]].count("running") == 1  # not restarted
        after = platform.container_ids()
        assert len(after) == 3 and len(set(after) & set(before)) == 2  # the two kept, the late one added
        assert f"rosetta-{doomed}" not in platform.containers()
        # Still reachable through the gateway after the restart.
        assert platform.task_client(running[0], token).get("/").status_code == 200


def test_container_removed_behind_our_back_makes_the_task_exited_within_5_s(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("hedy")
    with platform.api(token) as api:
        task_id = platform.start_task(api)
        platform.wait_for_task(api, task_id, {"running"})
        removed = time.monotonic()
        platform.remove_container(f"rosetta-{task_id}")
        task = platform.wait_for_task(api, task_id, {"exited", "failed", "stopped"}, timeout=10)
        assert time.monotonic() - removed < 5
        assert task["phase"] == "exited"
        # Podman kills before it removes: the controller may see either step first.
        reason = task["events"][-1]["reason"]
        assert "removed outside Rosetta" in reason or "was killed (SIGKILL, exit code 137)" in reason, reason


def test_a_network_left_behind_by_a_cut_short_launch_is_removed_and_a_live_one_kept(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("lise")
    with platform.api(token) as api:
        task_id = platform.start_task(api)
        platform.wait_for_task(api, task_id, {"running"})
        platform.kill("controller")
        # What a controller killed between creating a task's network and its container leaves.
        instance = (platform.home / "instance_id").read_text().strip()
        platform.podman(
            "network", "create", "--label", "rosetta.task=tcutshort01", "--label", f"rosetta.instance={instance}",
            "rosetta-tcutshort01",
        )  # fmt: skip
        assert "rosetta-tcutshort01" in platform.networks()

        platform.start_component("controller")
        deadline = time.monotonic() + 10
        while "rosetta-tcutshort01" in platform.networks() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert platform.networks() == [f"rosetta-{task_id}"]
        assert api.get(f"/api/tasks/{task_id}").json()["phase"] == "running"
        assert platform.task_client(task_id, token).get("/").status_code == 200


def test_program_exit_code_and_output_are_kept(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("katherine")
    image = platform.build_image(
        "localhost/rosetta-test/exit3",
        'FROM localhost/rosetta/hello\nCMD ["/bin/sh", "-c", "echo computing; sleep 1; echo bye; exit 3"]\n',
    )
    with platform.api(token) as api:
        assert api.post("/api/software", json={"name": "exit3", "image": image}).status_code == 201
        task_id = platform.start_task(api, software="exit3")
        task = platform.wait_for_task(api, task_id, {"exited", "failed"}, timeout=30)
        assert task["phase"] == "exited" and task["exit_code"] == 3
        assert "exited with code 3" in task["events"][-1]["reason"]
        # The container is gone, its output is not.
        assert f"rosetta-{task_id}" not in platform.containers()
        assert api.get(f"/api/tasks/{task_id}/logs").text == "computing\nbye\n"


def test_missing_image_fails_in_plain_words_with_the_engines_own_kept(fresh_platform):
    platform = fresh_platform
    image = "localhost/rosetta-test/does-not-exist"
    platform.start(separately=True)
    token = platform.create_user("lise")
    with platform.api(token) as api:
        assert api.post("/api/software", json={"name": "ghost", "image": image}).status_code == 201
        task_id = platform.start_task(api, software="ghost")
        task = platform.wait_for_task(api, task_id, {"failed", "exited", "running"}, timeout=60)
        assert task["phase"] == "failed"
        event = task["events"][-1]
        assert event["reason"] == f"Image {image} does not exist on local."
        assert event["detail"] == ""  # the engine's own words are for operators
        assert f"rosetta-{task_id}" not in platform.containers()  # nothing half-created
    with platform.api(platform.create_user("operator", admin=True)) as staff:
        detail = staff.get(f"/api/tasks/{task_id}").json()["events"][-1]["detail"]
        assert detail.startswith("Error:") and image in detail


def test_interface_that_never_answers_fails_after_the_start_timeout(fresh_platform):
    platform = fresh_platform
    platform.settings["ROSETTA_TASK_START_TIMEOUT"] = "3"
    platform.start(separately=True)
    token = platform.create_user("rosalind")
    with platform.api(token) as api:
        # httpd listens on 8080 but the catalogue says 9999: nothing will ever answer there.
        body = {"name": "wrong-port", "image": "localhost/rosetta/hello", "interface_port": 9999}
        assert api.post("/api/software", json=body).status_code == 201
        task_id = platform.start_task(api, software="wrong-port")
        platform.wait_for_task(api, task_id, {"starting"})
        # Meanwhile the gateway explains instead of failing bare.
        page = platform.task_client(task_id, token).get("/")
        assert page.status_code == 503 and "is starting" in page.text and page.headers["retry-after"] == "2"
        task = platform.wait_for_task(api, task_id, {"failed", "running", "exited"}, timeout=30)
        assert task["phase"] == "failed"
        assert "did not answer within 3 s" in task["events"][-1]["reason"]
        assert f"rosetta-{task_id}" not in platform.containers()


def test_stop_and_delete_sent_while_a_task_starts_are_not_lost(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("mary")
    with platform.api(token) as api:
        stopped, deleted = platform.start_task(api, name="stop-early"), platform.start_task(api, name="delete-early")
        assert api.post(f"/api/tasks/{stopped}/stop").status_code == 202  # while the controller launches it
        assert api.delete(f"/api/tasks/{deleted}").status_code == 202
        task = platform.wait_for_task(api, stopped, {"stopped", "failed"}, timeout=15)
        assert task["phase"] == "stopped" and task["desired"] == "stopped"
        for _ in range(300):
            if api.get(f"/api/tasks/{deleted}").status_code == 404:
                break
            time.sleep(0.05)
        assert api.get(f"/api/tasks/{deleted}").status_code == 404
        assert platform.containers() == []


def test_running_out_of_memory_is_said_for_a_helper_and_for_the_main_program(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("barbara")
    serve = "httpd -p 8080 -h /srv/www; sleep 1"  # the interface answers from a daemon, then:
    helper = platform.build_image(
        "localhost/rosetta-test/oom-helper",
        "FROM localhost/rosetta/hello\n"
        f'CMD ["/bin/sh", "-c", "{serve}; tail /dev/zero; echo still here; exec sleep 600"]\n',
    )
    main = platform.build_image(
        "localhost/rosetta-test/oom-main",
        f'FROM localhost/rosetta/hello\nCMD ["/bin/sh", "-c", "{serve}; exec tail /dev/zero"]\n',
    )
    with platform.api(token) as api:
        for name, image in (("oom-helper", helper), ("oom-main", main)):
            assert api.post("/api/software", json={"name": name, "image": image}).status_code == 201
        survivor = platform.start_task(api, software="oom-helper", memory_mb=32)
        victim = platform.start_task(api, software="oom-main", memory_mb=32)

        task = platform.wait_for_task(api, victim, {"exited", "failed"}, timeout=30)
        assert task["exit_code"] == 137
        assert task["events"][-1]["reason"] == "The program ran out of memory (limit 32 MiB) and was killed."

        said = "A process (tail) ran out of memory (limit 32 MiB) and was killed; the task goes on."
        deadline = time.monotonic() + 15
        while said not in [e["reason"] for e in api.get(f"/api/tasks/{survivor}").json()["events"]]:
            assert time.monotonic() < deadline, api.get(f"/api/tasks/{survivor}").json()["events"]
            time.sleep(0.2)
        assert api.get(f"/api/tasks/{survivor}").json()["phase"] == "running"
        assert "still here" in api.get(f"/api/tasks/{survivor}/logs").text


def test_fifty_tasks_at_once_each_run_once_and_stop_once(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    since = datetime.now(UTC).isoformat()
    tokens = [platform.create_user(f"user{n}") for n in range(5)]

    def start_ten(token: str) -> list[str]:
        with platform.api(token) as api:
            return [platform.start_task(api, name=f"burst-{n}") for n in range(10)]

    with ThreadPoolExecutor(5) as pool:
        owned = dict(zip(tokens, pool.map(start_ten, tokens), strict=True))
    for token, ids in owned.items():
        with platform.api(token) as api:
            for task_id in ids:
                platform.wait_for_task(api, task_id, {"running"}, timeout=120)
            for task_id in ids:
                assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
    for token, ids in owned.items():
        with platform.api(token) as api:
            for task_id in ids:
                task = platform.wait_for_task(api, task_id, {"stopped"}, timeout=120)
                history = [(event["phase"], event["reason"]) for event in task["events"]]
                assert_legal(history)
                phases = [phase for phase, _ in history]
                entered = [phase for n, phase in enumerate(phases) if n == 0 or phases[n - 1] != phase]
                assert entered == ["created", "starting", "running", "stopping", "stopped"], history
    created = platform.containers_created_since(since)
    assert sorted(created) == sorted(task_id for ids in owned.values() for task_id in ids)
    assert set(created.values()) == {1}, created  # exactly one container per task, ever
    assert platform.containers() == []


def test_a_burst_of_tasks_started_and_stopped_leaves_nothing_behind_and_keeps_every_output(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    image = platform.build_image(
        "localhost/rosetta-test/says-who",
        "FROM localhost/rosetta/hello\n"
        'CMD ["/bin/sh", "-c", "echo \\"I am $WHO\\"; exec /usr/local/bin/rosetta-hello"]\n',
    )
    tokens = [platform.create_user(f"crowd{n}") for n in range(3)]
    with platform.api(platform.create_user("operator", admin=True)) as staff:
        body = {"name": "says-who", "image": image, "visibility": "everyone"}
        assert staff.post("/api/software", json=body).status_code == 201

    def start_ten(user: int) -> list[str]:
        with platform.api(tokens[user]) as api:
            return [
                platform.start_task(api, software="says-who", name=f"who-{n}", environment={"WHO": f"{user}-{n}"})
                for n in range(10)
            ]

    with ThreadPoolExecutor(3) as pool:
        owned = dict(zip(tokens, pool.map(start_ten, range(3)), strict=True))
    for token, ids in owned.items():
        with platform.api(token) as api:
            for task_id in ids:
                platform.wait_for_task(api, task_id, {"running"}, timeout=180)
    assert len(platform.networks()) == 30
    for token, ids in owned.items():  # every stop at once
        with platform.api(token) as api:
            for task_id in ids:
                assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
    for user, (token, ids) in enumerate(owned.items()):
        with platform.api(token) as api:
            for n, task_id in enumerate(ids):
                platform.wait_for_task(api, task_id, {"stopped"}, timeout=180)
                assert f"I am {user}-{n}\n" in api.get(f"/api/tasks/{task_id}/logs").text
    assert platform.containers() == []
    deadline = time.monotonic() + 30  # networks go in batches, after their tasks stopped
    while platform.networks() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert platform.networks() == []


def test_the_network_of_a_stopped_task_left_by_a_killed_controller_is_removed(fresh_platform):
    """A controller killed after a task's container was removed, before its network was, leaves
    the network behind (recreated here, as the kill would leave it): the next controller removes it."""
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("ada")
    with platform.api(token) as api:
        task_id = platform.start_task(api)
        platform.wait_for_task(api, task_id, {"running"})
        assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
        platform.wait_for_task(api, task_id, {"stopped"})
        platform.kill("controller")
        deadline = time.monotonic() + 10
        while platform.networks() and time.monotonic() < deadline:
            time.sleep(0.1)  # a network rm the killed controller started runs to its end
        instance = (platform.home / "instance_id").read_text().strip()
        platform.podman(
            "network", "create", "--label", f"rosetta.task={task_id}", "--label", f"rosetta.instance={instance}",
            f"rosetta-{task_id}",
        )  # fmt: skip
        platform.start_component("controller")
        deadline = time.monotonic() + 10
        while platform.networks() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert platform.networks() == []
        assert api.get(f"/api/tasks/{task_id}").json()["phase"] == "stopped"
