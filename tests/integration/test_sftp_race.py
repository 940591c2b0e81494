"""The attack on storages served as a service account: a real task of one user, running as
that account on an SSH host of the test bed with the cluster's shared home mounted, swaps a
folder of its own for a symbolic link to another user's folder (`../bob-race`) and back, in a
tight loop, while the file manager lists, reads and writes through that folder. Over SFTP
(resolve with realpath, then use the path) this crossed into the other user's folder: 13
listings and 11 uploads in 684 rounds. Resolved by descriptors with O_NOFOLLOW
(rosetta.storage.descriptors), nothing crosses, however the swap falls.

The loop runs inside the task's own container (busybox `mv`), started with `podman exec` as
the service account on the host: the platform starts tasks with their image's command only,
and this is the same process, in the same container and mount, that the task could run."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.instance import Platform, free_port
from tests.integration.test_remote import TESTBED, bed, on

ROUNDS = 1000  # each: a listing, a read and an upload through the folder being swapped
WORKERS = 4
SECRET = b"bob's secret\n"
# Inside the task: `d` is a folder of the attacker's own, then for a moment the link to the
# victim's folder, then the folder again. Stops when the test leaves a file `stop` (or at a bound).
SWAP = """
cd /home/rosetta || exit 1  # the cluster's shared home is the task's home
ln -s ../bob-race link
n=0
while [ ! -e stop ] && [ $n -lt 2000000 ]; do
    mv d d.real && mv link d && mv d link && mv d.real d
    n=$((n + 1))
done
echo $n > swaps
"""


@pytest.fixture(scope="module")
def race(tmp_path_factory):
    """A platform with the test bed registered (the cluster's shared home, as the service
    account, a folder per user); ann's task on the SSH host mounts it; bob has a secret there."""
    described = bed()
    service = next(a for a in described["accounts"] if a["name"] == "rosetta")
    users = Path(service["home"]) / "users"
    platform = Platform(tmp_path_factory.mktemp("race"), settings={
        "ROSETTA_TESTBED_DIR": str(TESTBED),
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    })  # fmt: skip
    platform.set_up()
    platform.start()
    ann = platform.api(platform.create_user("ann-race"))
    bob = platform.api(platform.create_user("bob-race"))
    staff = platform.api(platform.create_user("staff-race", admin=True))
    try:
        put = bob.put("/api/storages/cluster-home/content", params={"path": "secret.txt"}, content=SECRET)
        assert put.status_code == 201, put.text
        assert ann.post("/api/storages/cluster-home/folders", json={"path": "d"}).status_code == 201
        ann.put("/api/storages/cluster-home/content", params={"path": "d/own.txt"}, content=b"ann's own\n")
        response = ann.post("/api/tasks", json={"software": "hello", "resource": "testbed-host", "name": "swapper",
                                                "storages": ["cluster-home"]})  # fmt: skip
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        task = platform.wait_for_task(ann, task_id, {"running", "failed"}, timeout=120)
        assert task["phase"] == "running", task["events"]
        yield platform, ann, staff, users, task_id
        ann.post(f"/api/tasks/{task_id}/stop")
        platform.wait_for_task(ann, task_id, {"stopped", "exited", "failed"}, timeout=60)
    finally:
        for client in (ann, bob, staff):
            client.close()
        platform.stop()
        for name in ("ann-race", "bob-race"):
            subprocess.run(["rm", "-rf", str(users / name)], check=False)


def test_a_task_swapping_a_folder_for_a_link_never_reaches_another_users_folder(race):
    platform, ann, _, users, task_id = race
    api = "/api/storages/cluster-home"
    ours = users / "ann-race"
    # Detached in the task's container (whatever becomes of this SSH session), at the lowest
    # priority: it swaps whenever the platform is not busy, without slowing it down.
    started = on("rstb-host", "nice", "-n", "19", "podman", "exec", "-d", f"rosetta-{task_id}", "sh", "-c", SWAP)
    assert started.returncode == 0, started.stderr
    seen: Counter = Counter()
    crossings: list[tuple[str, str]] = []  # (what crossed or failed, how)
    lock = threading.Lock()

    def rounds(worker: int) -> None:
        for index in range(worker, ROUNDS, WORKERS):
            try:
                one_round(index)
            except Exception as error:  # counted: the test fails on it
                with lock:
                    crossings.append(("a request failed", f"round {index}: {error!r}"))

    def one_round(index: int) -> None:
        listing = ann.get(f"{api}/entries", params={"path": "d"})
        read = ann.get(f"{api}/content", params={"path": "d/secret.txt"})
        upload = ann.put(f"{api}/content", params={"path": f"d/up-{index}.txt"}, content=b"from ann\n")
        with lock:
            for what, response in (("list", listing), ("read", read), ("upload", upload)):
                seen[what, response.status_code] += 1
                if response.status_code >= 500:
                    crossings.append(("a request failed", f"{what}: {response.status_code} {response.text[:200]}"))
            if listing.status_code == 200 and "secret.txt" in {e["name"] for e in listing.json()["entries"]}:
                crossings.append(("a listing showed bob's files", f"round {index}"))
            if read.status_code == 200 and read.content == SECRET:
                crossings.append(("a read returned bob's file", f"round {index}"))

    began = time.monotonic()
    try:
        deadline = time.monotonic() + 10
        while not (ours / "link").is_symlink() and time.monotonic() < deadline:
            time.sleep(0.1)  # the loop has begun
        workers = [threading.Thread(target=rounds, args=(worker,)) for worker in range(WORKERS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        (ours / "stop").write_text("")
        deadline = time.monotonic() + 30
        while not (ours / "swaps").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    elapsed = time.monotonic() - began
    landed = sorted(p.name for p in (users / "bob-race").iterdir() if p.name != "secret.txt")
    crossings += [("an upload landed in bob's folder", name) for name in landed]
    swaps = int((ours / "swaps").read_text())  # written when it stopped: it swapped to the end
    print(f"{ROUNDS} rounds in {elapsed:.0f} s, {swaps} swaps; answers: {dict(sorted(seen.items()))}")
    kinds = Counter(what for what, _ in crossings)
    assert not crossings, f"in {ROUNDS} rounds: {dict(kinds)}; for example {crossings[:5]}"
    # The race was really run: the file manager met the folder and the link alike.
    assert swaps > 100, swaps
    assert seen["list", 200] > 0 and seen["upload", 201] > 0, seen
    assert seen["list", 400] + seen["upload", 400] > 0, seen  # "a symbolic link: not followed"
    assert sum(count for (what, _), count in seen.items() if what == "list") == ROUNDS


def test_a_storage_that_holds_the_platforms_own_folder_is_refused(race):
    """The service account's home holds the platform's work directory (~/.rosetta: task
    folders, environment files with secrets, job scripts the account runs): served to users,
    it would hand them the account. Refused when used, saying why."""
    platform, ann, staff, users, _ = race
    service_home = str(users.parent)
    added = staff.post("/api/storages", json={
        "name": "service-home", "kind": "sftp", "resource": "testbed-slurm", "base_path": service_home,
        "mount_point": "/home/rosetta/service", "mountable_on": ["testbed-host"],
    })  # fmt: skip
    assert added.status_code == 201, added.text  # its work directory is relative to the home: known once there
    try:
        for response in (
            ann.get("/api/storages/service-home/entries"),
            ann.get("/api/storages/service-home/content", params={"path": ".rosetta"}),
            ann.put("/api/storages/service-home/content", params={"path": "x.txt"}, content=b"x"),
        ):
            assert response.status_code == 400 and "platform's own folder" in response.json()["detail"], response.text
        assert not (users.parent / "x.txt").exists()
        # Nor may a task mount it: it fails before anything is mounted, saying why.
        started = ann.post("/api/tasks", json={"software": "hello", "resource": "testbed-host", "name": "mounter",
                                               "storages": ["service-home"]})  # fmt: skip
        assert started.status_code == 201, started.text
        task = platform.wait_for_task(ann, started.json()["id"], {"running", "failed", "exited"}, timeout=120)
        assert task["phase"] == "failed" and "meets the platform's own folder" in task["reason"], task["events"]
    finally:
        staff.delete("/api/storages/service-home")


def test_a_storage_in_the_accounts_own_settings_is_refused(race):
    """The service account's hidden folders hold what it runs (~/.config: podman's settings;
    ~/.local: its image store): a storage there, even one staff made, is not served."""
    platform, ann, staff, users, _ = race
    settings = users.parent / ".config" / "containers"
    assert settings.is_dir()
    added = staff.post("/api/storages", json={"name": "service-settings", "kind": "sftp", "resource": "testbed-slurm",
                                              "base_path": str(settings)})  # fmt: skip
    assert added.status_code == 201, added.text
    try:
        listed = ann.get("/api/storages/service-settings/entries")
        assert listed.status_code == 400 and "account's own settings" in listed.json()["detail"], listed.text
        written = ann.put("/api/storages/service-settings/content", params={"path": "x.conf"}, content=b"x")
        assert written.status_code == 400
        assert not (settings / "x.conf").exists()
    finally:
        staff.delete("/api/storages/service-settings")
