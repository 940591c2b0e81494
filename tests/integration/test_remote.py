"""Tasks on other machines, on the project's real test bed (testbed/up): an SSH host with
rootless podman, one with docker, and a Slurm cluster — each reached through the gateway
exactly as a local task is, and each fault the issue names tried as it happens."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.checks import assert_legal
from tests.instance import Platform, free_port

TESTBED = Path("/var/lib/rosetta-testbed")
CTL = Path(__file__).resolve().parents[2] / "testbed" / "ctl"


def bed() -> dict:
    described = TESTBED / "testbed.json"
    assert described.exists(), "the test bed is not up: scripts/test.sh starts it with testbed/up"
    return json.loads(described.read_text())


def on(host: str, *argv: str, user: str = "rosetta") -> subprocess.CompletedProcess:
    """Run argv on a test bed host as ``user``, with the real OpenSSH client (quoted once:
    the remote shell joins ssh's arguments with spaces)."""
    return subprocess.run(["ssh", "-F", str(TESTBED / "ssh_config"), f"{user}@{host}", shlex.join(argv)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A platform with the test bed's resources registered, and a user of it."""
    described = bed()
    cancel_leftover_jobs()
    platform = Platform(tmp_path_factory.mktemp("remote"), ssh_door=True, settings={
        "ROSETTA_TESTBED_DIR": str(TESTBED),
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    })  # fmt: skip
    platform.set_up()
    platform.start()
    try:
        token = platform.create_user("marie")
        with platform.api(token) as api:
            yield platform, api, token
            stop_everything(platform, api)  # remote work outlives the platform: leave none behind
    finally:
        platform.stop()


@pytest.fixture(autouse=True)
def nodes_left_idle(request):
    """Whatever a test leaves running (it failed before its own stop) is stopped after it: the
    cluster's two nodes are every next test's too."""
    yield
    if "remote" in request.fixturenames:
        platform, api, _ = request.getfixturevalue("remote")
        stop_everything(platform, api)


def cancel_leftover_jobs() -> None:
    """Cancel every job on the test bed's cluster: a platform that died with work on it (a killed
    test run) leaves jobs that hold CPUs for up to an hour, and the tests here count on idle nodes."""
    slurm = {**os.environ, "SLURM_CONF": str(TESTBED / "slurm" / "slurm.conf")}
    jobs = subprocess.run(["squeue", "--noheader", "--format=%i"], env=slurm, capture_output=True, text=True).stdout
    if jobs.split():
        subprocess.run(["scancel", *jobs.split()], env=slurm, capture_output=True, timeout=60)
        assert all(job_ends(job, within=60) for job in jobs.split()), "leftover jobs on the test bed do not end"


def stop_everything(platform, api) -> None:
    active = platform.list_tasks(api, phase="active")
    for task in active:
        api.post(f"/api/tasks/{task['id']}/stop")
    for task in active:
        platform.wait_for_task(api, task["id"], {"stopped", "exited", "failed"}, timeout=60)


def job_ends(job: str, within: float = 20) -> bool:
    """Whether Slurm stops listing the job as pending, running or completing within a while."""
    deadline = time.monotonic() + within
    while job in on("rstb-login", "squeue", "--noheader", "--format=%i").stdout.split():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def drop_sessions(namespace: str) -> None:
    """End the SSH sessions a test bed host's sshd serves (its processes in that namespace)."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sshd: "):
                os.kill(int(pid), signal.SIGTERM)


def start(api, resource: str, **fields) -> str:
    response = api.post("/api/tasks", json={"software": "hello", "resource": resource, **fields})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def history(task: dict) -> list[tuple[str, str]]:
    return [(event["phase"], event["reason"]) for event in task["events"]]


def assert_the_task_secret_arrives(platform, task_id: str, token: str) -> None:
    """The platform gave the container its secret, and the gateway presents that secret in place
    of the user's API token: hello answers nothing else (401)."""
    page = platform.task_client(task_id, token).get("/index.html")
    assert page.status_code == 200 and "Hello from Rosetta" in page.text


@pytest.mark.parametrize(("resource", "host"), [("testbed-host", "rstb-host"), ("testbed-docker", "rstb-docker")])
def test_a_task_runs_on_an_ssh_host_and_is_reached_through_the_gateway(remote, resource, host):
    platform, api, token = remote
    task_id = start(api, resource, name=f"on-{resource}")
    task = platform.wait_for_task(api, task_id, {"running", "failed", "exited"}, timeout=120)
    assert task["phase"] == "running", history(task)
    page = platform.task_client(task_id, token).get("/")
    assert page.status_code == 200 and "Hello from Rosetta" in page.text
    assert_the_task_secret_arrives(platform, task_id, token)
    assert f"rosetta-{task_id}" in on(host, "podman" if resource == "testbed-host" else "docker", "ps").stdout
    assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
    task = platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)
    assert_legal(history(task))
    assert f"rosetta-{task_id}" not in on(host, "podman" if resource == "testbed-host" else "docker", "ps", "-a").stdout


def test_a_slurm_task_is_queued_placed_reached_and_stopped(remote):
    platform, api, token = remote
    task_id = start(api, "testbed-slurm", name="on-slurm", time_limit_minutes=10)
    task = platform.wait_for_task(api, task_id, {"running", "failed", "exited"}, timeout=120)
    assert task["phase"] == "running", history(task)
    assert_legal(history(task))
    assert {"queued", "starting", "running"} <= {phase for phase, _ in history(task)}
    placement = task["placement"]
    assert placement["job"] and placement["node"] in ("node1", "node2") and placement["ends_at"]
    page = platform.task_client(task_id, token).get("/")
    assert page.status_code == 200 and "Hello from Rosetta" in page.text
    assert_the_task_secret_arrives(platform, task_id, token)
    assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
    task = platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)
    assert_legal(history(task))
    assert job_ends(placement["job"])


def test_a_queued_task_shows_why_and_can_be_cancelled(remote):
    platform, api, _ = remote
    # Two jobs that take every CPU of both nodes: the third waits for resources.
    holders = [start(api, "testbed-slurm", name=f"holder-{n}", cpus=2, time_limit_minutes=10) for n in range(2)]
    try:
        for holder in holders:
            platform.wait_for_task(api, holder, {"running"}, timeout=120)
        waiting = start(api, "testbed-slurm", name="waiting", cpus=2, time_limit_minutes=10)
        deadline = time.monotonic() + 30
        while True:
            task = api.get(f"/api/tasks/{waiting}").json()
            if task["phase"] == "queued" and task["placement"]["reason"] == "Resources":
                break
            assert time.monotonic() < deadline, task
            time.sleep(0.5)
        assert any("Waiting in the queue of testbed-slurm: waiting for resources" in r for _, r in history(task))
        assert api.post(f"/api/tasks/{waiting}/stop").status_code == 202
        task = platform.wait_for_task(api, waiting, {"stopped"}, timeout=60)
        assert job_ends(task["placement"]["job"])
    finally:  # the nodes are the next test's too
        for holder in holders:
            api.post(f"/api/tasks/{holder}/stop")


def test_a_job_cancelled_outside_rosetta_ends_the_task_with_that_reason(remote):
    platform, api, _ = remote
    task_id = start(api, "testbed-slurm", name="cancelled-outside", time_limit_minutes=10)
    task = platform.wait_for_task(api, task_id, {"running"}, timeout=120)
    assert on("rstb-login", "scancel", task["placement"]["job"]).returncode == 0
    task = platform.wait_for_task(api, task_id, {"exited", "failed"}, timeout=60)
    assert task["events"][-1]["reason"] == "The job was cancelled outside Rosetta."


def test_impossible_cluster_requests_are_refused_with_the_limits_named(remote):
    _, api, _ = remote
    body = {"software": "hello", "resource": "testbed-slurm"}
    unknown = api.post("/api/tasks", json={**body, "partition": "gpu"})
    assert unknown.status_code == 400 and "no partition 'gpu'" in unknown.json()["detail"]
    assert "debug" in unknown.json()["detail"] and "long" in unknown.json()["detail"]
    too_long = api.post("/api/tasks", json={**body, "partition": "debug", "time_limit_minutes": 600})
    assert too_long.status_code == 400 and "At most 60 minutes in partition debug" in too_long.json()["detail"]


def test_an_unreachable_host_leaves_its_task_alone_and_recovers(remote):
    platform, api, token = remote
    task_id = start(api, "testbed-host", name="patient")
    platform.wait_for_task(api, task_id, {"running"}, timeout=120)
    subprocess.run([str(CTL), "stop-sshd", "rstb-host"], check=True, capture_output=True)
    drop_sessions("rstb-host")  # as when the host's sshd restarts: the platform's connection breaks
    try:
        deadline = time.monotonic() + 60
        while not any("is not answering" in r for _, r in history(api.get(f"/api/tasks/{task_id}").json())):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert api.get(f"/api/tasks/{task_id}").json()["phase"] == "running"  # unreachable is not ended
    finally:
        subprocess.run([str(CTL), "start-sshd", "rstb-host"], check=True, capture_output=True)
    deadline = time.monotonic() + 90
    while history(api.get(f"/api/tasks/{task_id}").json())[-1][1] != "testbed-host answers again.":
        assert time.monotonic() < deadline, history(api.get(f"/api/tasks/{task_id}").json())
        time.sleep(0.5)
    assert platform.task_client(task_id, token).get("/").status_code == 200
    api.post(f"/api/tasks/{task_id}/stop")


def test_a_changed_host_key_is_refused_clearly(remote):
    platform, api, _ = remote
    other_host = next(h for h in bed()["hosts"] if h["name"] == "rstb-docker")
    platform.rosetta("manage", "shell", "-c", (
        "from rosetta.computing.models import Resource; from rosetta.computing.services import save_resource; "
        "r = Resource.objects.get(name='testbed-host'); r.pk = None; r.name = 'impostor'; "
        f"r.host_keys = {other_host['host_keys'][0]['public_key']!r}; r.save()"
    ))  # fmt: skip
    task_id = start(api, "impostor", name="impostor-task")
    deadline = time.monotonic() + 30
    while not any("is not the one pinned" in r for _, r in history(api.get(f"/api/tasks/{task_id}").json())):
        assert time.monotonic() < deadline, history(api.get(f"/api/tasks/{task_id}").json())
        time.sleep(0.5)
    assert api.get(f"/api/tasks/{task_id}").json()["phase"] == "created"  # nothing ran there


def test_a_user_runs_tasks_as_their_own_account_with_the_key_the_platform_made(remote):
    platform, api, token = remote
    staff = platform.api(platform.create_user("operator-remote", admin=True))
    host = next(h for h in bed()["hosts"] if h["name"] == "rstb-host")
    added = staff.post("/api/resources", json={
        "name": "own-account", "transport": "ssh", "host": host["address"], "credentials": "user", "enabled": True,
    })  # fmt: skip
    assert added.status_code == 201, added.text
    checked = staff.post("/api/resources/own-account/check", params={"pin": "true"}).json()
    assert checked["pinned"] and checked["host_key"] in [key["fingerprint"] for key in host["host_keys"]]
    public_key = api.get("/api/me/ssh-key").json()["public_key"]
    authorized = Path(next(a["home"] for a in bed()["accounts"] if a["name"] == "alice")) / ".ssh" / "authorized_keys"
    before = authorized.read_text()
    authorized.write_text(before + public_key + "\n")  # what alice does once, on the host
    try:
        named = api.put("/api/me/ssh-key", json={"remote_username": "alice"})  # Rosetta logs in with the key to check
        assert named.status_code == 200, named.text
        task_id = start(api, "own-account", name="as-alice")
        task = platform.wait_for_task(api, task_id, {"running", "failed", "exited"}, timeout=120)
        assert task["phase"] == "running", history(task)
        assert (
            f"rosetta-{task_id}" in on("rstb-host", "podman", "ps", user="alice").stdout
        )  # alice's, not the service's
        assert f"rosetta-{task_id}" not in on("rstb-host", "podman", "ps").stdout
        assert platform.task_client(task_id, token).get("/").status_code == 200
        api.post(f"/api/tasks/{task_id}/stop")
        platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)
    finally:
        authorized.write_text(before)


def test_a_restarted_controller_reattaches_local_ssh_and_slurm_tasks(tmp_path):
    """Killed while tasks run here, on an SSH host and on the cluster (one still queued): after a
    restart every task is where it was, none started twice, nothing lost."""
    described = bed()
    platform = Platform(tmp_path / "rosetta", settings={
        "ROSETTA_TESTBED_DIR": str(TESTBED),
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    })  # fmt: skip
    platform.set_up()
    platform.start(separately=True)  # each component its own process: the controller alone dies
    try:
        token = platform.create_user("lovelace")
        with platform.api(token) as api:
            running = {
                resource: start(api, resource, name=f"keep-{resource}", cpus=2 if "slurm" in resource else 1)
                for resource in ("local", "testbed-host", "testbed-slurm")
            }
            for task_id in running.values():
                platform.wait_for_task(api, task_id, {"running"}, timeout=120)
            queued = start(api, "testbed-slurm", name="behind", cpus=2)
            platform.wait_for_task(api, queued, {"queued"}, timeout=60)
            holder = start(api, "testbed-slurm", name="holder", cpus=2)  # the cluster is full now
            platform.wait_for_task(api, holder, {"running", "queued"}, timeout=120)
            before = {task_id: api.get(f"/api/tasks/{task_id}").json() for task_id in [*running.values(), queued]}

            platform.kill("controller")  # SIGKILL: no chance to tidy up
            time.sleep(2)
            platform.start_component("controller")

            for task_id in running.values():
                task = platform.wait_for_task(api, task_id, {"running"}, timeout=60)
                assert [phase for phase, _ in history(task)].count("running") == 1, history(task)  # not restarted
                assert task["placement"] == before[task_id]["placement"]
                assert platform.task_client(task_id, token).get("/").status_code == 200
            assert api.get(f"/api/tasks/{queued}").json()["placement"]["job"] == before[queued]["placement"]["job"]
            stop_everything(platform, api)
    finally:
        platform.stop()


def test_a_job_at_its_time_limit_ends_the_task_with_that_reason(remote):
    platform, api, _ = remote
    task_id = start(api, "testbed-slurm", name="short", time_limit_minutes=1)
    platform.wait_for_task(api, task_id, {"running"}, timeout=120)
    task = platform.wait_for_task(api, task_id, {"exited", "failed"}, timeout=180)
    assert task["events"][-1]["reason"] == "The job reached its time limit.", history(task)


def test_a_job_on_a_failed_node_ends_the_task_with_that_reason(remote):
    platform, api, _ = remote
    task_id = start(api, "testbed-slurm", name="unlucky", time_limit_minutes=10)
    node = platform.wait_for_task(api, task_id, {"running"}, timeout=120)["placement"]["node"]
    subprocess.run([str(CTL), "kill-slurmd", node], check=True, capture_output=True)
    try:
        task = platform.wait_for_task(api, task_id, {"exited", "failed"}, timeout=180)
        assert task["events"][-1]["reason"] == "The node running the job failed.", history(task)
    finally:
        subprocess.run([str(CTL), "start-slurmd", node], check=True, capture_output=True)


def test_apptainer_runs_a_task_inside_a_batch_job(remote):
    if on("rstb-login", "sh", "-c", "command -v apptainer").returncode != 0:
        pytest.skip("apptainer is not installed on the test bed's cluster (Debian 12 does not package it)")
    platform, api, token = remote
    login = next(h for h in bed()["hosts"] if h["name"] == "rstb-login")
    platform.rosetta("manage", "shell", "-c", (
        "from rosetta.computing.models import Resource; "
        "r = Resource.objects.get(name='testbed-slurm'); r.pk = None; r.name = 'testbed-apptainer'; "
        "r.engine = 'apptainer'; r.save()"
    ))  # fmt: skip
    task_id = start(api, "testbed-apptainer", name="in-apptainer", time_limit_minutes=10)
    task = platform.wait_for_task(api, task_id, {"running", "failed", "exited"}, timeout=300)
    assert task["phase"] == "running", (login["address"], history(task))
    assert platform.task_client(task_id, token).get("/").status_code == 200
    api.post(f"/api/tasks/{task_id}/stop")
    platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)


def test_the_ssh_door_reaches_an_ssh_task_in_a_batch_job(remote, tmp_path):
    """`ssh -J` through the SSH front door to the real ssh image in a Slurm job on a compute
    node: the door joins the channel through the login node's connection, as the gateway does."""
    from tests.e2e.test_ssh_door import SSH_IMAGE, client_config, keygen, run, with_options

    platform, api, _ = remote
    software = {"name": "ssh-remote", "image": SSH_IMAGE, "interface_protocol": "ssh", "interface_port": 2222}
    assert api.post("/api/software", json={**software, "honours_base_port": True}).status_code == 201
    key = keygen(tmp_path, "marie_key")
    assert api.post("/api/me/keys", json={"public_key": Path(f"{key}.pub").read_text()}).status_code == 201
    deadline = time.monotonic() + 120
    while next(s for s in api.get("/api/software").json() if s["name"] == "ssh-remote")["registry_state"] != "pushed":
        assert time.monotonic() < deadline, "the ssh image was not copied to the platform's registry"
        time.sleep(0.5)
    task_id = api.post(
        "/api/tasks", json={"software": "ssh-remote", "resource": "testbed-slurm", "time_limit_minutes": 10}
    ).json()["id"]
    task = platform.wait_for_task(api, task_id, {"running", "failed", "exited"}, timeout=180)
    assert task["phase"] == "running", history(task)
    (tmp_path / "known_hosts").write_text(api.get("/api/ssh").json()["known_hosts"] + "\n")
    config = client_config(tmp_path, "marie", key)
    inside = run(with_options(task["ssh_command"], config, "-o", "StrictHostKeyChecking=accept-new") + ["hostname -I"])
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split()[0] in {"10.231.0.21", "10.231.0.22"}  # host networking on a compute node
    assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
    platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)


SQUATTER = """
import http.server, sys
class Impostor(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("got", self.headers.get("Authorization", ""), flush=True)
        self.send_response(200); self.end_headers(); self.wfile.write(b"IMPOSTOR")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("", int(sys.argv[1])), Impostor).serve_forever()
"""


def test_a_port_another_job_holds_on_the_node_is_never_taken_for_the_task(remote):
    """With host networking, another job of the cluster's account may listen on a task's port
    first: it must get none of the task's requests (nor the task's secret with them). The
    launcher writes where the interface listens only once the container holds the port."""
    platform, api, token = remote
    entry = {
        "name": "fixed-port",
        "image": "localhost/rosetta/hello",
        "interface_port": 8080,
        "honours_base_port": False,
    }
    assert api.post("/api/software", json=entry).status_code == 201
    deadline = time.monotonic() + 120
    while next(s for s in api.get("/api/software").json() if s["name"] == "fixed-port")["registry_state"] != "pushed":
        assert time.monotonic() < deadline, "the image was not copied to the platform's registry"
        time.sleep(0.5)
    squatters = [
        subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{node}",
                "runuser",
                "-u",
                "rosetta",
                "--",
                "python3",
                "-c",
                SQUATTER,
                "8080",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for node in ("rstb-node1", "rstb-node2")  # wherever the job lands
    ]
    try:
        time.sleep(1)
        assert all(squatter.poll() is None for squatter in squatters), "port 8080 was not free on the nodes"
        task_id = start(api, "testbed-slurm", software="fixed-port", name="squatted", storages=[])
        task = platform.wait_for_task(api, task_id, {"running", "failed", "exited"}, timeout=120)
        assert task["phase"] != "running", history(task)
        assert "is held by another program" in task["reason"], history(task)
        assert platform.task_client(task_id, token).get("/").text != "IMPOSTOR"
    finally:
        for squatter in squatters:
            squatter.terminate()
        heard = "".join(squatter.communicate(timeout=10)[0] for squatter in squatters)
    assert "got" not in heard  # not the probe, not the user: nothing of the task reached it
