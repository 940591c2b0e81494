"""A storage on the test bed's cluster, over SFTP through the resource's SSH connection: every
operation through the API as the user's own account (alice), files that are hers on the
cluster, links out refused, other users kept out, the CLI round trip, the cluster's shared home
registered by `rosetta setup`, and a task on the cluster writing a file the file manager shows."""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.instance import Platform, free_port
from tests.integration.test_remote import TESTBED, bed, on


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A platform with the test bed registered; marie runs as alice on the login node, and a
    storage in alice's home is open to her alone."""
    described = bed()
    alice = next(a for a in described["accounts"] if a["name"] == "alice")
    login = next(h for h in described["hosts"] if h["name"] == "rstb-login")
    platform = Platform(tmp_path_factory.mktemp("sftp"), settings={
        "ROSETTA_TESTBED_DIR": str(TESTBED),
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    })  # fmt: skip
    platform.set_up()
    platform.start()
    root = Path(alice["home"]) / "rosetta-storage-test"
    authorized = Path(alice["home"]) / ".ssh" / "authorized_keys"
    before = authorized.read_text()
    staff = platform.api(platform.create_user("operator-sftp", admin=True))
    token = platform.create_user("marie-sftp")
    marie = platform.api(token)
    ben = platform.api(platform.create_user("ben-sftp"))
    try:
        added = staff.post("/api/resources", json={
            "name": "login-own", "transport": "ssh", "host": login["address"], "credentials": "user", "enabled": True,
        })  # fmt: skip
        assert added.status_code == 201, added.text
        assert staff.post("/api/resources/login-own/check", params={"pin": "true"}).json()["pinned"]
        authorized.write_text(before + marie.get("/api/me/ssh-key").json()["public_key"] + "\n")  # alice does this once
        assert marie.put("/api/me/ssh-key", json={"remote_username": "alice"}).status_code == 200  # checked with it
        storage = staff.post("/api/storages", json={
            "name": "cluster-own", "kind": "sftp", "resource": "login-own", "users": ["marie-sftp"],
            "base_path": str(Path(alice["home"].replace("alice", "{username}")) / "rosetta-storage-test"),
            "mount_point": "/home/rosetta/cluster", "mountable_on": ["login-own"],
        })  # fmt: skip
        assert storage.status_code == 201, storage.text
        yield platform, marie, ben, token, root, alice["uid"]
        for task in platform.list_tasks(marie):
            marie.post(f"/api/tasks/{task['id']}/stop")
            platform.wait_for_task(marie, task["id"], {"stopped", "exited", "failed"}, timeout=60)
    finally:
        authorized.write_text(before)
        subprocess.run(["rm", "-rf", str(root)], check=False)
        for client in (staff, marie, ben):
            client.close()
        platform.stop()


def test_every_operation_over_sftp_as_the_users_own_account(cluster):
    platform, marie, ben, _, root, alice_uid = cluster
    assert {"cluster-own", "cluster-home"} <= {s["name"] for s in marie.get("/api/storages").json()}
    api = "/api/storages/cluster-own"
    first = marie.put(f"{api}/content", params={"path": "obs.txt"}, content=b"night one\n")
    assert first.status_code == 201, first.text
    assert marie.put(f"{api}/content", params={"path": "obs.txt"}, content=b"x").status_code == 409
    assert marie.post(f"{api}/folders", json={"path": "runs"}).status_code == 201
    assert marie.post(f"{api}/copy", json={"source": "obs.txt", "destination": "runs/a.txt"}).status_code == 201
    assert marie.post(f"{api}/move", json={"source": "obs.txt", "destination": "runs/b.txt"}).status_code == 200
    listing = marie.get(f"{api}/entries", params={"path": "runs"}).json()["entries"]
    assert sorted((e["name"], e["size"]) for e in listing) == [("a.txt", 10), ("b.txt", 10)]
    assert marie.get(f"{api}/content", params={"path": "runs/b.txt"}).content == b"night one\n"
    with zipfile.ZipFile(io.BytesIO(marie.get(f"{api}/content", params={"path": "runs"}).content)) as zipped:
        assert sorted(zipped.namelist()) == ["a.txt", "b.txt"]
    # Alice's files on the cluster, not the platform's service account's.
    assert os.stat(root / "runs" / "a.txt").st_uid == alice_uid
    assert os.stat(root / "runs").st_uid == alice_uid
    assert marie.post(f"{api}/copy", json={"source": "runs", "destination": "runs2"}).status_code == 201
    assert marie.delete(f"{api}/entries", params={"path": "runs2"}).status_code == 200
    assert not (root / "runs2").exists()

    # Links out of the storage are not followed; paths that leave it are refused.
    os.symlink("/etc", root / "escape")
    os.lchown(root / "escape", alice_uid, alice_uid)
    for path, words in (("escape", "symbolic link"), ("escape/ssh", "symbolic link"), ("../bob", "leaves its folder")):
        for response in (
            marie.get(f"{api}/entries", params={"path": path}),
            marie.get(f"{api}/content", params={"path": f"{path}/x"}),
            marie.put(f"{api}/content", params={"path": f"{path}/x"}, content=b"pwned"),
        ):
            assert response.status_code == 400 and words in response.json()["detail"], response.text
    # Ben may not use it: for him it does not exist.
    assert ben.get(f"{api}/entries").status_code == 404


def test_the_cli_round_trip_and_the_registered_cluster_home(cluster, tmp_path):
    platform, marie, _, token, _, _ = cluster
    # More than the blocks kept in flight each way, of an odd size: every byte comes back in order.
    (tmp_path / "spectrum.dat").write_bytes(os.urandom(9 * 1024 * 1024 + 12_345))
    platform.rosetta("files", "put", str(tmp_path / "spectrum.dat"), "cluster-own:cli/", token=token)
    assert "spectrum.dat" in platform.rosetta("files", "ls", "cluster-own:cli", token=token).stdout
    platform.rosetta("files", "get", "cluster-own:cli/spectrum.dat", str(tmp_path / "back.dat"), token=token)
    assert (tmp_path / "back.dat").read_bytes() == (tmp_path / "spectrum.dat").read_bytes()
    platform.rosetta("files", "rm", "-r", "cluster-own:cli", token=token)

    # `rosetta setup` registered the cluster's shared home: a folder per user, as the service account.
    assert marie.put("/api/storages/cluster-home/content", params={"path": "hi.txt"}, content=b"hi").status_code == 201
    service = next(a for a in bed()["accounts"] if a["name"] == "rosetta")
    written = Path(service["home"]) / "users" / "marie-sftp" / "hi.txt"
    assert written.read_bytes() == b"hi" and written.stat().st_uid == service["uid"]
    marie.delete("/api/storages/cluster-home/entries", params={"path": "hi.txt"})


def test_a_task_on_the_cluster_writes_a_file_the_file_manager_shows(cluster):
    platform, marie, _, _, root, alice_uid = cluster
    marie.put("/api/storages/cluster-own/content", params={"path": "input.txt"}, content=b"for the task\n")
    response = marie.post("/api/tasks", json={"software": "hello", "resource": "login-own", "name": "sftp-task",
                                              "storages": ["cluster-own"]})  # fmt: skip
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    task = platform.wait_for_task(marie, task_id, {"running", "failed"}, timeout=120)
    assert task["phase"] == "running", task["events"]
    script = "cat /home/rosetta/cluster/input.txt && echo 'from the cluster' > /home/rosetta/cluster/output.txt"
    ran = on("rstb-login", "podman", "exec", f"rosetta-{task_id}", "sh", "-c", script, user="alice")
    assert ran.returncode == 0 and ran.stdout == "for the task\n", ran.stderr
    shown = marie.get("/api/storages/cluster-own/content", params={"path": "output.txt"})
    assert shown.status_code == 200 and shown.text == "from the cluster\n"
    assert os.stat(root / "output.txt").st_uid == alice_uid  # the task wrote as alice


def test_a_slurm_jobs_home_is_the_clusters_shared_home(cluster):
    platform, marie, _, _, _, _ = cluster
    # By default: the cluster's shared home is the job's home.
    response = marie.post("/api/tasks", json={"software": "hello", "resource": "testbed-slurm", "name": "slurm-files"})
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    assert response.json()["home_storage"] == "cluster-home"
    task = platform.wait_for_task(marie, task_id, {"running", "failed"}, timeout=120)
    assert task["phase"] == "running", task["events"]
    ran = on("rstb-login", "podman", "exec", f"rosetta-{task_id}", "sh", "-c", "echo 'from a job' > ~/job.txt")
    assert ran.returncode == 0, ran.stderr
    assert marie.get("/api/storages/cluster-home/content", params={"path": "job.txt"}).text == "from a job\n"
    marie.delete("/api/storages/cluster-home/entries", params={"path": "job.txt"})

    # Without it the home is scratch, and the platform says plainly that it cannot look inside a job.
    bare = marie.post("/api/tasks", json={"software": "hello", "resource": "testbed-slurm", "name": "slurm-bare",
                                          "storages": []})  # fmt: skip
    assert bare.status_code == 201 and bare.json()["home_storage"] is None, bare.text
    platform.wait_for_task(marie, bare.json()["id"], {"running"}, timeout=120)
    scratch = marie.get(f"/api/tasks/{bare.json()['id']}/scratch").json()
    assert not scratch["checked"] and scratch["files"] is None
    assert "cannot look into a running container on testbed-slurm" in scratch["warning"]


def test_fits_previews_over_sftp(cluster):
    """A remote file is previewed from a copy, in the same sandbox as a local one."""
    from astropy.io import fits

    _, marie, _, _, _, _ = cluster
    api = "/api/storages/cluster-own"
    image = io.BytesIO()
    fits.PrimaryHDU(np.arange(64 * 48, dtype="float32").reshape(64, 48)).writeto(image)
    assert marie.put(f"{api}/content", params={"path": "m31.fits"}, content=image.getvalue()).status_code == 201
    described = marie.get(f"{api}/fits", params={"path": "m31.fits"})
    assert described.status_code == 200 and described.json()["hdus"][0]["shape"] == [64, 48], described.text
    drawn = marie.get(f"{api}/fits.png", params={"path": "m31.fits"})
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
    declared = "".join(f"{card:<80}" for card in ("SIMPLE  = T", "BITPIX  = -64", "NAXIS   = 2", "NAXIS1  = 200000",
                                                   "NAXIS2  = 200000", "END")).ljust(2880)  # fmt: skip
    marie.put(f"{api}/content", params={"path": "huge.fits"}, content=declared.encode() + bytes(2880))
    refused = marie.get(f"{api}/fits.png", params={"path": "huge.fits"})
    assert refused.status_code == 413 and "pixels" in refused.json()["detail"]
    for name in ("m31.fits", "huge.fits"):
        marie.delete(f"{api}/entries", params={"path": name})
