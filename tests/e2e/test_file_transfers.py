"""Transfers that must be whole or fail, through the running platform on a storage of this
machine, and storages kept apart from the platform's own folders: two uploads of one name
without overwrite (one wins, the other is refused), a folder deeper than Python's recursion
limit downloaded as a complete zip, a zip that cannot be finished seen by the client as a
failed transfer, a file replaced while it is downloaded over and over (every download whole),
and a storage whose users' folders could meet the platform's task folder not created. The same
over SSH: tests/integration/test_sftp_race.py and tests/unit/test_storage_helper.py."""

from __future__ import annotations

import io
import os
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from rosetta.storage import descriptors


@pytest.fixture(scope="module")
def eve(platform):
    client = platform.api(platform.create_user("eve-transfers"))
    assert client.get("/api/storages/home/entries").status_code == 200  # her folder, made on first use
    yield client, platform.home / "storage" / "home" / "eve-transfers"
    client.close()


def test_two_uploads_of_one_name_without_overwrite_one_wins(platform, eve):
    client, root = eve
    answers: dict[str, httpx.Response] = {}

    def upload(who: str, pause: float) -> None:
        def slowly():
            for piece in (who.encode(), b"-", b"done"):
                time.sleep(pause)
                yield piece

        answers[who] = client.put("/api/storages/home/content", params={"path": "result.txt"}, content=slowly())

    uploads = [threading.Thread(target=upload, args=(who, pause)) for who, pause in (("first", 0.3), ("second", 0.8))]
    for thread in uploads:
        thread.start()
    for thread in uploads:
        thread.join()
    assert answers["first"].status_code == 201, answers["first"].text
    assert answers["second"].status_code == 409, answers["second"].text
    assert "already exists" in answers["second"].json()["detail"]
    assert (root / "result.txt").read_bytes() == b"first-done"  # not replaced by the later one
    assert sorted(p.name for p in root.iterdir()) == ["result.txt"]
    (root / "result.txt").unlink()


def _deep(root: Path, depth: int) -> None:
    """A chain of folders ``depth`` deep (made by descriptors: its path outgrows PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as out:
        out.write(b"the bottom")
    os.close(fd)


def test_a_folder_deeper_than_the_recursion_limit_downloads_whole(platform, eve):
    client, root = eve
    (root / "deep").mkdir()
    _deep(root / "deep", 1100)
    try:
        response = client.get("/api/storages/home/content", params={"path": "deep"}, timeout=120)
        assert response.status_code == 200
        with zipfile.ZipFile(io.BytesIO(response.content)) as zipped:
            names = zipped.namelist()
            assert len(names) == 1101
            assert zipped.read("d/" * 1100 + "bottom.txt") == b"the bottom"
    finally:
        removed = client.delete("/api/storages/home/entries", params={"path": "deep"})
        if (root / "deep").exists():  # pytest's own clean-up of its temporary folders recurses
            parent = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            descriptors.remove_tree(parent, "deep")
            os.close(parent)
    assert removed.status_code == 200, removed.text


def test_a_folder_whose_paths_outgrow_path_max_is_not_zipped(platform, eve):
    """Each zip entry repeats its whole path: thousands of nested folders (a few KiB on disk)
    would make gigabytes. Past PATH_MAX the download fails, having sent almost nothing."""
    client, root = eve
    (root / "deeper").mkdir()
    _deep(root / "deeper", 2100)  # "d/" x 2100: 4200 bytes
    try:
        received = 0
        with pytest.raises(httpx.HTTPError):
            with client.stream("GET", "/api/storages/home/content", params={"path": "deeper"}, timeout=60) as response:
                for chunk in response.iter_raw():
                    received += len(chunk)
        assert received < 1024 * 1024
    finally:
        parent = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        descriptors.remove_tree(parent, "deeper")
        os.close(parent)


def test_a_zip_that_cannot_be_finished_is_a_failed_transfer(platform, eve):
    client, root = eve
    (root / "run").mkdir()
    (root / "run" / "a-big.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    (root / "run" / "b-small.txt").write_bytes(b"small")
    received = 0
    try:
        with pytest.raises(httpx.HTTPError):  # not a clean end of a shorter, valid-looking archive
            with client.stream("GET", "/api/storages/home/content", params={"path": "run"}, timeout=60) as response:
                assert response.status_code == 200
                for chunk in response.iter_raw():
                    if not received:
                        (root / "run" / "b-small.txt").unlink()  # gone before the archive reaches it
                    received += len(chunk)
        assert received < 64 * 1024 * 1024 + 1000
    finally:
        client.delete("/api/storages/home/entries", params={"path": "run"})


def test_a_file_replaced_while_it_is_downloaded_is_always_sent_whole(platform, eve):
    client, root = eve
    versions = {b"a" * (1024 * 1024), b"b" * 1000}
    (root / "data.bin").write_bytes(b"a" * (1024 * 1024))
    stop = threading.Event()

    def replace_again_and_again() -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            fresh = root / f"fresh-{turn % 2}"
            fresh.write_bytes(b"b" * 1000 if turn % 2 else b"a" * (1024 * 1024))
            os.replace(fresh, root / "data.bin")

    replacer = threading.Thread(target=replace_again_and_again)
    replacer.start()
    failures, sizes = [], set()
    try:
        for _ in range(150):
            try:
                response = client.get("/api/storages/home/content", params={"path": "data.bin"})
            except httpx.HTTPError as error:
                failures.append(repr(error))
                continue
            if response.status_code != 200 or response.content not in versions:
                failures.append(f"{response.status_code}: {len(response.content)} bytes")
            sizes.add(len(response.content))
    finally:
        stop.set()
        replacer.join()
        for leftover in root.iterdir():
            leftover.unlink()
    assert not failures, f"{len(failures)} of 150 downloads broken: {failures[:5]}"
    assert sizes == {1024 * 1024, 1000}  # both versions were met


def test_a_storage_that_could_meet_the_platforms_own_folder_is_not_created(platform):
    """A user named `work` would have the platform's task folder on this machine as their own."""
    with platform.api(platform.create_user("staff-transfers", admin=True)) as staff:
        refused = staff.post("/api/storages", json={"name": "beside", "base_path": f"{platform.home}/{{username}}"})
        assert refused.status_code == 400 and "platform's own folder" in refused.json()["detail"], refused.text
        assert "beside" not in {s["name"] for s in staff.get("/api/storages").json()}
        fine = staff.post("/api/storages", json={"name": "apart", "base_path": f"{platform.home}/data/{{username}}"})
        assert fine.status_code == 201, fine.text
        staff.delete("/api/storages/apart")
