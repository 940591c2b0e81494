"""Storages on this machine, as users reach them: every file operation through the API, the
`rosetta files` round trip, the attacks on paths (traversal, links out, NUL, long names), read-only
storages, other users' files, an interrupted upload, a 1 GiB upload with the platform's memory
staying flat, and a task writing a file the file manager then shows (and the reverse)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.instance import ROSETTA

GIB = 1024**3


@pytest.fixture(scope="module")
def users(platform):
    """(client of ada, client of ben, client of staff); ada's and ben's storage roots."""
    ada = platform.api(platform.create_user("ada-files"))
    ben = platform.api(platform.create_user("ben-files"))
    staff = platform.api(platform.create_user("staff-files", admin=True))
    yield ada, ben, staff
    for client in (ada, ben, staff):
        client.close()


def root_of(platform, username: str) -> Path:
    return platform.home / "storage" / "home" / username


def test_every_operation_through_the_api(platform, users):
    ada, ben, _ = users
    storages = ada.get("/api/storages").json()
    assert [s["name"] for s in storages] == ["home"] and storages[0]["mount_point"] == "/home/rosetta"
    assert ada.get("/api/storages/home/entries").json()["entries"] == []

    put = ada.put("/api/storages/home/content", params={"path": "notes.txt"}, content=b"first light\n")
    assert put.status_code == 201 and put.json()["size"] == 12
    again = ada.put("/api/storages/home/content", params={"path": "notes.txt"}, content=b"x")
    assert again.status_code == 409  # no silent overwrite
    replaced = ada.put("/api/storages/home/content", params={"path": "notes.txt", "overwrite": "true"},
                       content=b"second light\n")  # fmt: skip
    assert replaced.status_code == 201
    assert ada.get("/api/storages/home/content", params={"path": "notes.txt"}).content == b"second light\n"

    assert ada.post("/api/storages/home/folders", json={"path": "run1"}).status_code == 201
    assert ada.post("/api/storages/home/folders", json={"path": "run1"}).status_code == 409
    assert (
        ada.post("/api/storages/home/copy", json={"source": "notes.txt", "destination": "run1/a.txt"}).status_code
        == 201
    )
    assert (
        ada.post("/api/storages/home/move", json={"source": "notes.txt", "destination": "run1/b.txt"}).status_code
        == 200
    )
    listing = ada.get("/api/storages/home/entries", params={"path": "run1"}).json()
    assert sorted(e["name"] for e in listing["entries"]) == ["a.txt", "b.txt"]
    assert ada.post("/api/storages/home/copy", json={"source": "run1", "destination": "run2"}).status_code == 201
    assert ada.post("/api/storages/home/move", json={"source": "run1", "destination": "run1/inner"}).status_code == 400

    archive = ada.get("/api/storages/home/content", params={"path": "run2"})
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        assert sorted(zipped.namelist()) == ["a.txt", "b.txt"] and zipped.read("a.txt") == b"second light\n"

    assert ada.delete("/api/storages/home/entries", params={"path": "run2"}).status_code == 200
    assert ada.get("/api/storages/home/stat", params={"path": "run2"}).status_code == 404
    # On disk, in ada's own folder; ben's home is another folder, and he sees nothing of hers.
    assert (root_of(platform, "ada-files") / "run1" / "a.txt").read_bytes() == b"second light\n"
    assert ben.get("/api/storages/home/entries").json()["entries"] == []
    assert ben.get("/api/storages/home/content", params={"path": "run1/a.txt"}).status_code == 404

    # A user's file is never served as a page of the platform: HTML is an attachment, sandboxed.
    ada.put("/api/storages/home/content", params={"path": "x.html"}, content=b"<script>alert(1)</script>")
    page = ada.get("/api/storages/home/content", params={"path": "x.html", "inline": "true"})
    assert page.headers["content-type"] == "application/octet-stream"
    assert (
        page.headers["content-disposition"].startswith("attachment")
        and "sandbox" in page.headers["content-security-policy"]
    )


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("../ben-files/secret", "leaves its folder"),
        ("run1/../../x", "leaves its folder"),
        ("/etc/passwd", "is absolute"),
        ("a\x00b", "NUL"),
        ("n" * 256, "longer than 255"),
        ("escape/passwd", "symbolic link"),
        ("escape/ssh/new", "symbolic link"),
        ("passwd-link/x", "symbolic link"),
    ],
)
def test_paths_stay_inside_the_storage(platform, users, path, words):
    ada, _, _ = users
    root = root_of(platform, "ada-files")
    root.mkdir(parents=True, exist_ok=True)
    for name, target in (("escape", "/etc"), ("passwd-link", "/etc/passwd")):
        if not (root / name).is_symlink():
            os.symlink(target, root / name)  # as a task or another program could
    for method, endpoint, extra in (
        ("GET", "/content", {}),
        ("GET", "/entries", {}),
        ("PUT", "/content", {"content": b"pwned"}),
        ("DELETE", "/entries", {}),
    ):
        response = ada.request(method, f"/api/storages/home{endpoint}", params={"path": path}, **extra)
        assert response.status_code == 400, (method, endpoint, response.text)
        assert words in response.json()["detail"]
    moved = ada.post("/api/storages/home/move", json={"source": "notes-none", "destination": path})
    assert moved.status_code in (400, 404)
    assert Path("/etc/passwd").read_bytes().count(b"pwned") == 0 and not Path("/etc/pwned").exists()
    # The links themselves are listed, never followed: not read, not listed through, not written through.
    names = {e["name"]: e for e in ada.get("/api/storages/home/entries").json()["entries"]}
    assert names["escape"]["kind"] == "link" and names["escape"]["target"] == "/etc"
    for link in ("escape", "passwd-link"):
        assert ada.get("/api/storages/home/content", params={"path": link}).status_code == 400
        assert ada.get("/api/storages/home/entries", params={"path": link}).status_code == 400
        assert ada.put("/api/storages/home/content", params={"path": link}, content=b"pwned").status_code == 409


def test_read_only_and_restricted_storages(platform, users, tmp_path):
    ada, ben, staff = users
    shared = tmp_path / "survey"
    shared.mkdir()
    (shared / "catalogue.csv").write_text("ra,dec\n10.1,-5.2\n")
    added = staff.post("/api/storages", json={
        "name": "survey", "base_path": str(shared), "read_only": True, "users": ["ada-files"],
        "mountable_on": ["local"], "mounted_by_default": False,
    })  # fmt: skip
    assert added.status_code == 201, added.text
    try:
        assert ada.get("/api/storages/survey/content", params={"path": "catalogue.csv"}).text.startswith("ra,dec")
        for response in (
            ada.put("/api/storages/survey/content", params={"path": "new.txt"}, content=b"x"),
            ada.post("/api/storages/survey/folders", json={"path": "d"}),
            ada.post("/api/storages/survey/move", json={"source": "catalogue.csv", "destination": "c.csv"}),
            ada.delete("/api/storages/survey/entries", params={"path": "catalogue.csv"}),
        ):
            assert response.status_code == 403 and "read-only" in response.json()["detail"]
        assert sorted(p.name for p in shared.iterdir()) == ["catalogue.csv"]
        # Ben is not among its users: for him it does not exist.
        assert "survey" not in [s["name"] for s in ben.get("/api/storages").json()]
        assert ben.get("/api/storages/survey/entries").status_code == 404
        assert ben.post("/api/storages", json={"name": "mine", "base_path": "/"}).status_code == 403
    finally:
        staff.delete("/api/storages/survey")


def test_an_interrupted_upload_leaves_no_file(platform, users):
    ada, _, _ = users
    token = ada.headers["Authorization"]
    with socket.create_connection(("127.0.0.1", platform.port)) as connection:
        connection.sendall(
            b"PUT /api/storages/home/content?path=partial.bin HTTP/1.1\r\nHost: localhost\r\n"
            + f"Authorization: {token}\r\nContent-Length: 10000000\r\n\r\n".encode()
            + b"\0" * 1_000_000
        )
        time.sleep(0.5)
    root = root_of(platform, "ada-files")
    deadline = time.monotonic() + 10
    while any(p.name.startswith(".rosetta-upload-") for p in root.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (root / "partial.bin").exists()
    assert not [p.name for p in root.iterdir() if p.name.startswith(".rosetta-upload-")]


def _web_pid(platform) -> int:
    supervisor = platform.processes["run"].pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == supervisor and b"web" in cmdline:
                return int(entry.name)
    raise AssertionError("no web process under rosetta run")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_1_gib_upload_and_download_keep_the_platforms_memory_flat(platform, users):
    ada, _, _ = users
    pid = _web_pid(platform)
    ada.put("/api/storages/home/content", params={"path": "warm.bin"}, content=b"w" * 1024)  # first-use imports
    before = _rss_mib(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_mib(pid))

    def zeros():
        chunk = bytes(1024 * 1024)
        for _ in range(1024):
            yield chunk

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        started = time.monotonic()
        response = ada.put("/api/storages/home/content", params={"path": "big.bin"}, content=zeros(),
                           headers={"Content-Length": str(GIB)}, timeout=300)  # fmt: skip
        upload_seconds = time.monotonic() - started
        assert response.status_code == 201 and response.json()["size"] == GIB
        received = 0
        with ada.stream("GET", "/api/storages/home/content", params={"path": "big.bin"}, timeout=300) as download:
            for chunk in download.iter_raw():
                received += len(chunk)
        assert received == GIB
    finally:
        done.set()
        sampler.join()
        (root_of(platform, "ada-files") / "big.bin").unlink(missing_ok=True)
    grew = peak[0] - before
    print(f"1 GiB up in {upload_seconds:.1f} s; web RSS {before:.0f} MiB -> peak {peak[0]:.0f} MiB")
    assert grew < 64, f"the web process grew by {grew:.0f} MiB during a 1 GiB transfer"


def test_the_cli_round_trip(platform, users, tmp_path):
    ada, _, _ = users
    token = ada.headers["Authorization"].split()[1]
    (tmp_path / "out" / "sub").mkdir(parents=True)
    # Larger than the batches an upload is written in, of an odd size: every byte comes back in order.
    (tmp_path / "out" / "spectrum.dat").write_bytes(os.urandom(9 * 1024 * 1024 + 12_345))
    (tmp_path / "out" / "sub" / "note.txt").write_text("sub note\n")

    def files(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return platform.rosetta("files", *args, token=token, check=check)

    assert "home" in files("ls").stdout
    files("put", str(tmp_path / "out"), "home:cli/")
    listing = files("ls", "home:cli/out").stdout
    assert "spectrum.dat" in listing and "sub/" in listing
    files("cp", "home:cli/out/spectrum.dat", "home:cli/copy.dat")
    files("mv", "home:cli/copy.dat", "home:cli/out/sub")  # into the folder
    files("mkdir", "home:cli/empty")
    files("get", "home:cli/out/sub/copy.dat", str(tmp_path / "back.dat"))
    assert (tmp_path / "back.dat").read_bytes() == (tmp_path / "out" / "spectrum.dat").read_bytes()
    files("get", "home:cli/out", str(tmp_path))
    with zipfile.ZipFile(tmp_path / "out.zip") as zipped:
        assert zipped.read("sub/note.txt") == b"sub note\n"
    refused = files("rm", "home:cli", check=False)
    assert refused.returncode == 1 and "rm -r" in refused.stderr
    files("rm", "-r", "home:cli")
    escaped = files("get", "home:../ben-files/x", check=False)
    assert escaped.returncode == 1 and "leaves its folder" in escaped.stderr and "Traceback" not in escaped.stderr


def test_downloads_get_the_mode_the_users_umask_gives(platform, users, tmp_path):
    ada, _, _ = users
    token = ada.headers["Authorization"].split()[1]
    assert ada.post("/api/storages/home/folders", json={"path": "modes"}).status_code < 300
    ada.put("/api/storages/home/content", params={"path": "modes/table.csv"}, content=b"a,b\n1,2\n").raise_for_status()

    def get(remote: str, umask: int) -> None:
        fetched = subprocess.run([*ROSETTA, "files", "get", remote, str(tmp_path)], capture_output=True, text=True,
                                 env={**platform.env, "ROSETTA_TOKEN": token}, umask=umask, timeout=60)  # fmt: skip
        assert fetched.returncode == 0, fetched.stderr

    # As cp or curl -o would make them: 0666 less the umask (the CLI's own files are 0600).
    get("home:modes/table.csv", 0o022)
    get("home:modes", 0o022)  # a folder, as a zip
    assert {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()} == {
        "table.csv": 0o644,
        "modes.zip": 0o644,
    }  # and no temporary left beside them
    get("home:modes/table.csv", 0o027)  # again: the new file replaces the old, with its own mode
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "table.csv").read_bytes() == b"a,b\n1,2\n"
    ada.delete("/api/storages/home/entries", params={"path": "modes"})


def test_a_task_sees_the_storage_and_the_file_manager_sees_what_it_writes(platform, users):
    ada, _, _ = users
    ada.put("/api/storages/home/content", params={"path": "input.txt"}, content=b"from the platform\n")
    unmounted = ada.post("/api/tasks", json={"software": "hello", "resource": "local", "name": "without",
                                             "storages": [], "cpus": 0.5, "memory_mb": 128})  # fmt: skip
    assert unmounted.status_code == 201 and unmounted.json()["mounts"] == []
    refused = ada.post("/api/tasks", json={"software": "hello", "resource": "local", "storages": ["nope"]})
    assert refused.status_code == 400 and "cannot be mounted on local" in refused.json()["detail"]
    ada.delete(f"/api/tasks/{unmounted.json()['id']}")
    # The defaults: home is ticked, and is the task's home.
    response = ada.post("/api/tasks", json={"software": "hello", "resource": "local", "name": "with-home",
                                            "cpus": 0.5, "memory_mb": 128})  # fmt: skip
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    task = platform.wait_for_task(ada, task_id, {"running", "failed"}, timeout=90)
    assert task["phase"] == "running", task["events"]
    assert task["mounts"] == [{"storage": "home", "target": "/home/rosetta", "read_only": False}]
    container = f"rosetta-{task_id}"

    def inside(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", "exec", container, "sh", "-c", script], env=platform.podman_env,
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    assert inside("cat ~/input.txt").stdout == "from the platform\n"
    wrote = inside("echo 'from the task' > ~/result.txt && ln -s /etc ~/out-link")
    assert wrote.returncode == 0, wrote.stderr
    names = {e["name"]: e for e in ada.get("/api/storages/home/entries").json()["entries"]}
    assert names["result.txt"]["size"] == len("from the task\n")
    assert ada.get("/api/storages/home/content", params={"path": "result.txt"}).text == "from the task\n"
    # A link the task made out of the storage is shown, never followed.
    assert ada.get("/api/storages/home/entries", params={"path": "out-link"}).status_code == 400
    # The task's file is the platform's to change too, and the reverse.
    assert (
        ada.post("/api/storages/home/move", json={"source": "result.txt", "destination": "kept.txt"}).status_code == 200
    )
    assert inside("echo more >> /home/rosetta/input.txt").returncode == 0
    ada.post(f"/api/tasks/{task_id}/stop")
    platform.wait_for_task(ada, task_id, {"stopped", "exited"}, timeout=60)
    ada.delete("/api/storages/home/entries", params={"path": "out-link"})
