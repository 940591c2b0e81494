"""Nothing is lost when a process dies or a resource stumbles (issue 20): against real podman."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.instance import Platform, free_port

# Stands in for the real podman on the controller's PATH: its first `run` fails the way podman
# fails when another podman holds the image store's mounts (seen under concurrent starts), after
# creating the container as podman does; everything else goes to the real podman.
FLAKY_PODMAN = """#!{python}
import os, subprocess, sys
args = sys.argv[1:]
if "run" in args and not os.path.exists("{marker}"):
    open("{marker}", "w").close()
    at = args.index("run")
    create = [*args[:at], "create", *[a for a in args[at + 1 :] if a != "--detach"]]
    subprocess.run(["{podman}", *create], capture_output=True)
    sys.stderr.write(
        "Error: mounting storage for container 0123: creating overlay mount to /var/lib/containers/storage/"
        'overlay/0123/merged, mount_data="lowerdir=/var/lib/containers/storage/overlay/l/ABC": permission denied\\n'
    )
    sys.exit(126)
os.execv("{podman}", ["{podman}", *args])
"""


def test_a_start_cut_short_by_a_busy_image_store_is_tried_again_and_runs(fresh_platform, tmp_path):
    platform = fresh_platform
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "failed-once"
    flaky = bin_dir / "podman"
    flaky.write_text(FLAKY_PODMAN.format(python=sys.executable, marker=marker, podman=shutil.which("podman")))
    flaky.chmod(0o755)
    platform.settings["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    platform.start(separately=True)
    token = platform.create_user("ada")
    with platform.api(token) as api:
        task_id = platform.start_task(api)
        task = platform.wait_for_task(api, task_id, {"running", "failed", "exited"}, timeout=60)
        assert marker.exists()  # the launch did fail once
        assert task["phase"] == "running", task["events"]
        said = [event["reason"] for event in task["events"]]
        assert any("could not mount the image's files" in reason and "Trying again" in reason for reason in said), said
        assert platform.task_client(task_id, token).get("/").status_code == 200


def test_a_stop_cut_short_by_a_controller_kill_keeps_the_logs_and_is_completed_by_the_next(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("grace")
    with platform.api(token) as api:
        task_id = platform.start_task(api)
        platform.wait_for_task(api, task_id, {"running"})
        assert platform.task_client(task_id, token).get("/kept-line").status_code == 404
        name = f"rosetta-{task_id}"
        removals = subprocess.Popen(
            ["podman", "events", "--filter", f"container={name}", "--filter", "event=remove", "--format", "{{.Name}}"],
            env=platform.podman_env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
            assert removals.stdout.readline().strip() == name  # the controller removed the container...
            platform.kill("controller")  # ...and died at once, as in a crash
        finally:
            removals.kill()
            removals.wait()
        assert name not in platform.containers()
        cut_short = api.get(f"/api/tasks/{task_id}").json()
        platform.start_component("controller")
        task = platform.wait_for_task(api, task_id, {"stopped", "failed"}, timeout=30)
        assert task["phase"] == "stopped", (cut_short["phase"], task["events"])
        assert "request /kept-line" in api.get(f"/api/tasks/{task_id}/logs").text, cut_short["phase"]
        assert name not in platform.containers() and platform.networks() == []


def _children_of(pid: int) -> list[int]:
    children = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat_file.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_children_die_with_a_killed_supervisor_and_a_second_supervisor_says_one_runs(fresh_platform):
    platform = fresh_platform
    platform.start()  # `rosetta run`
    supervisor = platform.processes["run"]
    children = _children_of(supervisor.pid)
    assert len(children) >= 4, children  # web, controller, gateway, builder (and the registry's)

    second = platform.rosetta("run", "--port", str(free_port()), check=False, timeout=60)
    assert second.returncode == 1, second
    assert f"Rosetta is already running for {platform.home}" in second.stderr, second.stderr
    assert f"pid {supervisor.pid}" in second.stderr and "Traceback" not in second.stderr, second.stderr
    assert platform.processes["run"].poll() is None  # the one running goes on

    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait()
    deadline = time.monotonic() + 15
    while any(map(_alive, children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], "children outlived their supervisor"

    platform.start()  # a new `rosetta run` on the same home and port serves
    assert httpx.get(f"{platform.url}/login/", timeout=5).status_code == 200


# Another web process's upload, alive: it holds its temporary locked, as every upload does.
LIVE_UPLOAD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
old = time.time() - 3600
os.utime(sys.argv[1], (old, old))  # unchanged for an hour: a stalled client
print("holding", flush=True)
time.sleep(600)
"""


def test_uploads_cut_short_by_a_killed_web_process_leave_nothing_behind(fresh_platform):
    platform = fresh_platform
    platform.start(separately=True)
    token = platform.create_user("hedy")
    folder = platform.home / "storage" / "home" / "hedy"
    with platform.api(token) as api:
        put = api.put("/api/storages/home/content", params={"path": "kept.txt"}, content=b"mine\n")
        assert put.status_code == 201, put.text
        sent = threading.Event()

        def forever():
            yield b"x" * (4 << 20)
            sent.set()
            time.sleep(120)  # the client is still there; the web process is not
            yield b""

        def upload():
            with contextlib.suppress(httpx.HTTPError):
                platform.api(token).put("/api/storages/home/content", params={"path": "big.bin"}, content=forever())

        uploading = threading.Thread(target=upload, daemon=True)
        uploading.start()
        assert sent.wait(30)
        deadline = time.monotonic() + 30
        while not (abandoned := [p for p in folder.iterdir() if p.name.startswith(".rosetta-upload-")]):
            assert time.monotonic() < deadline, "no upload temporary appeared"
            time.sleep(0.05)
        platform.kill("web")
        old = time.time() - 3600
        for path in abandoned:
            os.utime(path, (old, old))
        live = subprocess.Popen(
            [sys.executable, "-c", LIVE_UPLOAD, str(folder / ".rosetta-upload-live")], stdout=subprocess.PIPE, text=True
        )
        try:
            assert live.stdout.readline().strip() == "holding"
            platform.start_component("web")
            platform.wait_until_up()
            deadline = time.monotonic() + 20
            while any(path.exists() for path in abandoned) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = sorted(p.name for p in folder.iterdir())
            assert left == [".rosetta-upload-live", "kept.txt"], left
        finally:
            live.kill()
            live.wait()
        listed = api.get("/api/storages/home/entries")
        assert [entry["name"] for entry in listed.json()["entries"]] == ["kept.txt"], listed.text


@pytest.fixture
def platform_on_a_small_disk(tmp_path):
    """A Rosetta whose home is a file system of its own, 64 MiB (tmpfs: needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(disk)], check=True)
    instance = Platform(disk / "rosetta")
    try:
        instance.set_up()
        yield instance, disk
    finally:
        instance.stop()
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # to the last byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def test_a_full_platform_disk_still_serves_reads_and_refuses_writes_plainly(platform_on_a_small_disk):
    platform, disk = platform_on_a_small_disk
    platform.start(separately=True)
    token = platform.create_user("ada")  # not used before the disk is full: its first use would be recorded
    with platform.api(platform.create_user("grace")) as other:
        assert other.get("/api/health").json()["status"] == "ok"
    filler = _fill(disk)
    with platform.api(token) as api:
        for path in ("/api/me", "/api/tasks", "/api/software", "/api/storages"):
            answer = api.get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text)
        assert httpx.get(f"{platform.url}/login/", timeout=10).status_code == 200  # pages too
        refused = api.post("/api/tasks", json={"software": "hello", "resource": "local"})
        assert refused.status_code == 507, refused.text
        assert "The platform's disk is full" in refused.json()["detail"]
        health = httpx.get(f"{platform.url}/api/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "degraded", health.text
        assert "disk is full" in health.json()["problems"][0]

        filler.unlink()  # an operator frees space: everything works again
        assert httpx.get(f"{platform.url}/api/health", timeout=10).status_code == 200
        created = api.post("/api/tasks", json={"software": "hello", "resource": "local"})
        assert created.status_code == 201, created.text


TESTBED_CTL = Path(__file__).resolve().parents[2] / "testbed" / "ctl"


@pytest.fixture
def remote_platform(tmp_path):
    from tests.integration.test_remote import bed

    described = bed()
    platform = Platform(tmp_path / "rosetta", settings={
        "ROSETTA_TESTBED_DIR": "/var/lib/rosetta-testbed",
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    })  # fmt: skip
    platform.set_up()
    platform.start()
    yield platform
    platform.stop()


def test_a_task_on_a_host_that_stops_answering_gets_a_page_saying_so_within_seconds(remote_platform):
    platform = remote_platform
    token = platform.create_user("ada")
    with platform.api(token) as api:
        task_id = api.post("/api/tasks", json={"software": "hello", "resource": "testbed-host"}).json()["id"]
        task = platform.wait_for_task(api, task_id, {"running", "failed", "exited"}, timeout=120)
        assert task["phase"] == "running", task["events"]
        with platform.task_client(task_id, token) as interface:
            assert interface.get("/").status_code == 200
        subprocess.run([str(TESTBED_CTL), "disconnect", "rstb-host"], check=True, capture_output=True)
        try:
            time.sleep(2.5)  # the host's latest sign of life is no proof any more
            began = time.monotonic()
            with platform.task_client(task_id, token) as interface:
                answer = interface.get("/", timeout=60)
            took = time.monotonic() - began
            assert answer.status_code == 503, answer.text
            assert "is not answering" in answer.text and "cannot be reached now" in answer.text, answer.text
            assert took < 6, took
        finally:
            subprocess.run([str(TESTBED_CTL), "reconnect", "rstb-host"], check=True, capture_output=True)
        deadline = time.monotonic() + 60
        while True:  # back once the host answers again
            with platform.task_client(task_id, token) as interface, contextlib.suppress(httpx.HTTPError):
                if interface.get("/", timeout=10).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the task did not come back after the host did"
            time.sleep(0.5)
        api.post(f"/api/tasks/{task_id}/stop")
        platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)
