"""The file helper that serves storages on other machines (rosetta.storage.descriptors), run
here as it runs there — `python3 -I -S`, its text on standard input — and driven by the
platform's own client (rosetta.storage.sftp) over the process's pipes instead of an SSH
channel: every operation, links never followed, uploads that never replace unless asked,
deep folders, the platform's own folders refused, and a helper kept in step after each
kind of ending. The same over the real SSH connection: tests/integration/test_sftp_*.py."""

from __future__ import annotations

import ast
import asyncio
import os
from pathlib import Path

import pytest

from rosetta.storage import descriptors
from rosetta.storage.errors import AlreadyExists, NoSuchFile, PathRefused, StorageUnreachable
from rosetta.storage.sftp import ARGV, HELPER, SFTPFiles, fixed_part, helpers_of, may_meet


class PipeProcess:
    """A local helper process with the parts of asyncssh's process the client uses."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stdin, self.stdout, self.stderr = process.stdin, process.stdout, process.stderr
        self.channel = process.stdin.transport  # set_write_buffer_limits

    def is_closing(self) -> bool:
        return self.process.returncode is not None or self.stdin.is_closing()

    def close(self) -> None:
        self.stdin.close()


class PipeTransport:
    """Starts the helper on this machine, as the SSH transport starts it on another."""

    where = "this machine"

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = str(work_dir)
        self.started: list[PipeProcess] = []

    async def start(self, argv) -> PipeProcess:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        self.started.append(PipeProcess(process))
        return self.started[-1]


@pytest.fixture
def place(tmp_path):
    """(files of alice's folder under users/, alice's folder, the transport)."""
    transport = PipeTransport(tmp_path / "platform")
    (tmp_path / "platform").mkdir()
    base = str(tmp_path / "users" / "{username}")
    root = tmp_path / "users" / "alice"
    return SFTPFiles(transport, str(root), False, fixed_part(base)), root, transport


async def body(*chunks: bytes, pause: float = 0):
    for chunk in chunks:
        if pause:
            await asyncio.sleep(pause)
        yield chunk


async def content(files, path) -> bytes:
    return b"".join([chunk async for chunk in files.read(path)])


def test_the_helper_is_python_3_6_and_its_standard_library():
    ast.parse(HELPER, feature_version=(3, 6))  # login nodes with an old python3 run it
    imported = set()
    for node in ast.walk(ast.parse(HELPER)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"errno", "fcntl", "json", "os", "secrets", "stat", "struct", "sys", "ctypes", "resource"}
    assert "\n" not in " ".join(ARGV)  # one line, whatever the account's shell


async def test_every_operation(place):
    files, root, transport = place
    assert await files.list(()) == []  # the user's folder, made on first use, private
    assert root.stat().st_mode & 0o777 == 0o700
    made = await files.write(("notes.txt",), body(b"first ", b"light\n"))
    assert (made.name, made.kind, made.size) == ("notes.txt", "file", 12)
    with pytest.raises(AlreadyExists, match="overwrite=true"):
        await files.write(("notes.txt",), body(b"x"))
    await files.write(("notes.txt",), body(b"second light\n"), overwrite=True)
    assert await content(files, ("notes.txt",)) == b"second light\n"
    await files.mkdir(("run1",))
    with pytest.raises(AlreadyExists):
        await files.mkdir(("run1",))
    await files.copy(("notes.txt",), ("run1", "a.txt"))
    await files.move(("notes.txt",), ("run1", "b.txt"))
    os.symlink("a.txt", root / "run1" / "link")
    listing = sorted((e.name, e.kind, e.size, e.target) for e in await files.list(("run1",)))
    assert listing == [("a.txt", "file", 13, ""), ("b.txt", "file", 13, ""), ("link", "link", 0, "a.txt")]
    await files.copy(("run1",), ("run2",))  # links copied as links
    assert os.readlink(root / "run2" / "link") == "a.txt"
    with pytest.raises(PathRefused, match="into itself"):
        await files.move(("run1",), ("run1", "inner"))
    with pytest.raises(AlreadyExists):
        await files.move(("run1",), ("run2",))
    assert (await files.stat(("run2", "b.txt"))).size == 13
    await files.remove(("run2",))
    with pytest.raises(NoSuchFile):
        await files.stat(("run2",))
    name = "spectre-été-\udcff.txt"  # not UTF-8 on disk: its bytes come back as they are
    await files.write(("run1", name), body(b"x"))
    assert name in {e.name for e in await files.list(("run1",))}
    assert os.fsencode(name) in os.listdir(os.fsencode(root / "run1"))
    assert len(transport.started) == 1  # one helper served all of it, one request at a time


async def test_links_are_never_followed(place, tmp_path):
    files, root, _ = place
    await files.mkdir(("data",))
    secret = tmp_path / "users" / "bob"
    secret.mkdir()
    (secret / "diary.txt").write_text("bob's")
    os.symlink("../bob", root / "escape")
    for attempt in (
        files.list(("escape",)),
        files.read(("escape", "diary.txt")).__anext__(),
        files.write(("escape", "x"), body(b"pwned")),
        files.mkdir(("escape", "x")),
        files.copy(("escape", "diary.txt"), ("stolen",)),
        files.remove(("escape", "diary.txt")),
    ):
        with pytest.raises(PathRefused, match="symbolic link"):
            await attempt
    with pytest.raises(PathRefused, match="symbolic link"):
        await files.read(("escape",)).__anext__()
    await files.remove(("escape",))  # the link itself
    assert sorted(os.listdir(secret)) == ["diary.txt"]
    # Paths the platform would never send are refused by the helper too.
    with pytest.raises(PathRefused, match="not a name"):
        await files.list(("..",))
    with pytest.raises(PathRefused, match="not a name"):
        await files.stat(("data/../..",))


async def test_a_users_folder_that_is_a_link_is_refused(tmp_path):
    transport = PipeTransport(tmp_path / "platform")
    (tmp_path / "users").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "users" / "mallory")
    files = SFTPFiles(transport, str(tmp_path / "users" / "mallory"), False, str(tmp_path / "users"))
    with pytest.raises(PathRefused, match="symbolic link"):
        await files.list(())


@pytest.mark.parametrize("layout", ["inside", "equal", "holds", "holds-before-it-exists"])
async def test_a_root_that_meets_the_platforms_own_folder_is_refused(tmp_path, layout):
    home = tmp_path / "home"
    work = {
        "inside": home / ".rosetta",
        "equal": home / "users" / "alice",
        "holds": home / "users" / "alice" / "sub" / ".rosetta",
        "holds-before-it-exists": home / "users" / "alice" / "later" / ".rosetta",
    }[layout]
    if layout == "inside":
        root = work / "users" / "alice"
        base = str(work / "users" / "{username}")
    else:
        root = home / "users" / "alice"
        base = str(home / "users" / "{username}")
    if layout != "holds-before-it-exists":
        work.mkdir(parents=True)
        (work / "job.sh").write_text("#!/bin/sh\n")
    files = SFTPFiles(PipeTransport(work), str(root), False, fixed_part(base))
    with pytest.raises(PathRefused, match="platform's own folder"):
        await files.list(())
    with pytest.raises(PathRefused, match="platform's own folder"):
        await files.write(("job.sh",), body(b"pwned"))


async def test_work_directories_are_found_under_the_accounts_home(tmp_path, monkeypatch):
    """Resources give their work directory relative to the account's home (.rosetta), and the
    account's ~/.ssh is the account itself: neither is served."""
    home = tmp_path / "home"
    (home / ".rosetta").mkdir(parents=True)
    (home / ".ssh").mkdir()
    monkeypatch.setenv("HOME", str(home))  # the helper's, as sshd sets it
    (tmp_path / "elsewhere").mkdir()
    elsewhere = PipeTransport(tmp_path / "elsewhere")
    for base, root in ((tmp_path / "{username}", home), (home / "{username}", home / ".ssh")):
        files = SFTPFiles(elsewhere, str(root), False, fixed_part(str(base)), platform=[".rosetta"])
        with pytest.raises(PathRefused, match="platform's own folder"):
            await files.list(())
    fine = SFTPFiles(elsewhere, str(home / "alice"), False, fixed_part(str(home / "{username}")), [".rosetta"])
    assert await fine.list(()) == []


async def test_two_uploads_of_one_name_without_overwrite_one_wins(place):
    files, root, _ = place
    await files.list(())
    first = asyncio.ensure_future(files.write(("result.txt",), body(b"one", b"-first", pause=0.2)))
    second = asyncio.ensure_future(files.write(("result.txt",), body(b"two", b"-second", pause=0.4)))
    done = await asyncio.gather(first, second, return_exceptions=True)
    assert done[0].size == 9 and isinstance(done[1], AlreadyExists), done
    assert (root / "result.txt").read_bytes() == b"one-first"
    assert [p.name for p in root.iterdir()] == ["result.txt"]  # no temporary left


async def test_an_abandoned_upload_leaves_nothing_and_the_helper_goes_on(place):
    files, root, transport = place
    await files.list(())

    async def client_goes_away():
        yield b"x" * 3_000_000
        raise ConnectionAbortedError("The client went away during the upload.")

    with pytest.raises(ConnectionAbortedError):
        await files.write(("big.bin",), client_goes_away())
    assert list(root.iterdir()) == []
    assert await files.list(()) == []
    assert len(transport.started) == 1  # still in step: the same helper


async def test_a_read_left_half_way_does_not_confuse_the_next_request(place):
    files, root, transport = place
    await files.list(())
    (root / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    entry, chunks = await files.open(("big.bin",))
    assert entry.size == 5 * 1024 * 1024
    await chunks.__anext__()
    await chunks.aclose()  # the client went away
    (root / "small.txt").write_bytes(b"small")
    assert await content(files, ("small.txt",)) == b"small"


async def test_the_size_is_the_opened_files_and_the_content_is_exactly_that(place):
    files, root, _ = place
    await files.list(())
    (root / "data.bin").write_bytes(b"a" * 3_000_000)
    entry, chunks = await files.open(("data.bin",))
    (root / "new.bin").write_bytes(b"b" * 10)
    os.replace(root / "new.bin", root / "data.bin")  # replaced after it was opened
    assert entry.size == 3_000_000
    assert b"".join([chunk async for chunk in chunks]) == b"a" * 3_000_000
    # A file that shrinks while it is read is an error, never a quietly short file.
    (root / "data.bin").write_bytes(b"c" * 3_000_000)
    entry, chunks = await files.open(("data.bin",))
    os.truncate(root / "data.bin", 1000)
    with pytest.raises(PathRefused, match="shrank"):
        async for _ in chunks:
            pass
    assert await files.stat(("data.bin",))  # and the helper goes on


async def test_very_deep_folders(place):
    files, root, _ = place
    await files.list(())
    depth = 1100  # more than Python's recursion limit
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    with open(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as out:
        out.write(b"down here")
    os.close(fd)
    try:
        walked = [below async for below, _ in files.walk(())]
        assert len(walked) == depth + 1 and walked[-1] == ("d",) * depth + ("bottom.txt",)
        await files.copy(("d",), ("copy",))
        assert await content(files, ("copy", *("d",) * (depth - 1), "bottom.txt")) == b"down here"
        await files.remove(("d",))
        await files.remove(("copy",))
        assert await files.list(()) == []
    finally:
        parent = os.open(root, os.O_RDONLY)  # pytest's own clean-up of its temporary folders recurses
        for left in os.listdir(parent):
            descriptors.remove_tree(parent, left)
        os.close(parent)


async def test_a_helper_that_cannot_start_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr("rosetta.storage.sftp.ARGV", ("python3", "-c", "import sys; sys.exit('no python here')"))
    files = SFTPFiles(PipeTransport(tmp_path), str(tmp_path / "alice"), False)
    with pytest.raises(StorageUnreachable, match="python3.*no python here"):
        await files.list(())


async def test_a_dead_idle_helper_is_replaced(place):
    files, root, transport = place
    await files.list(())
    transport.started[0].process.kill()
    await transport.started[0].process.wait()
    assert await files.list(()) == []
    assert len(transport.started) == 2
    assert helpers_of(transport).idle == [h for h in helpers_of(transport).idle if not h.broken]


@pytest.mark.parametrize(
    ("base_path", "folder", "meets"),
    [
        ("/home/rosetta/users/{username}", "/home/rosetta/.rosetta", False),
        ("/home/{username}", "/home/rosetta/.rosetta", True),  # the user called rosetta
        ("/scratch/x-{username}", "/scratch/x-rosetta/work", True),
        ("/scratch/x-{username}", "/scratch/y", False),
        ("/home/rosetta", "/home/rosetta/.rosetta", True),
        ("/data/rosetta/.rosetta/users/{username}", "/data/rosetta/.rosetta", True),
    ],
)
def test_where_the_paths_tell_that_a_storage_meets_a_platform_folder(base_path, folder, meets):
    assert may_meet(base_path, folder) is meets


def test_the_operators_part_of_a_base_path():
    assert fixed_part("/home/rosetta/users/{username}") == "/home/rosetta/users"
    assert fixed_part("/data/{username}/files") == "/data"
    assert fixed_part("/data/shared/") == "/data/shared"
