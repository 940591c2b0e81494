"""Keeps the platform's processes running for `rosetta run`.

Some processes are replaced gracefully (the gateway): on SIGHUP, or when one dies, a new one
is started with the same inherited listening sockets; once it says it is ready, the old one
gets SIGTERM and finishes its open connections (WebSockets included) on its own, while the
new one already accepts. The sockets stay open here all along, so no connection is refused:
while no process accepts, the kernel queues them.

Children die with their supervisor, even one killed with SIGKILL (the kernel's parent-death
signal: they get SIGTERM), and one supervisor runs per home at a time (a lock on a file in the
run directory, released by the kernel when its holder dies however it dies).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import subprocess
import time
from pathlib import Path

from rosetta.core.processes import dies_with_parent

RESTART_BACKOFF_MAX = 30.0
HEALTHY_AFTER = 10.0  # a child that ran this long is restarted without delay
STARTUP_GRACE = 5.0
READY_TIMEOUT = 60.0  # how long a replacement may take to say it is ready
STOP_TIMEOUT = 10.0
READY_FD_ENV = "ROSETTA_READY_FD"  # a child replaced gracefully writes a line to this descriptor once it serves


class AlreadyRunning(Exception):
    def __init__(self, pid: str) -> None:
        super().__init__(pid)
        self.pid = pid


def claim(lock_file: Path) -> int:
    """Become the one supervisor of the home ``lock_file`` is in: a descriptor to keep open for
    as long as this process supervises (not inherited: children never hold the claim), with this
    process's pid written in the file. AlreadyRunning (with the holder's pid) when another has it."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            raise
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyRunning(holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def report_ready() -> None:
    """Tell the supervisor this process serves (nothing happens when not supervised)."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None and fd.isdigit():
        with contextlib.suppress(OSError):
            os.write(int(fd), b"ready\n")
            os.close(int(fd))


class Supervisor:
    def __init__(
        self,
        commands: dict[str, list[str]],
        pass_fds: dict[str, list[int]] | None = None,
        graceful: frozenset[str] = frozenset(),
    ) -> None:
        self.commands = commands
        self.pass_fds = pass_fds or {}  # descriptors each child inherits (listening sockets)
        self.graceful = graceful
        self.children: dict[str, subprocess.Popen] = {}
        self.retiring: list[subprocess.Popen] = []  # replaced, finishing their connections
        self.started: dict[str, float] = {}
        self.backoff: dict[str, float] = dict.fromkeys(commands, 0.0)
        self.stopping = False
        self.replace_wanted = False
        self.ever_up = False  # a child dying before this is a set-up problem, not a crash
        self.launched = 0.0

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request_stop)
        signal.signal(signal.SIGHUP, self._request_replace)
        for name in self.commands:
            self._start(name)
        self.launched = time.monotonic()
        while not self.stopping:
            if self.replace_wanted:
                self.replace_wanted = False
                for name in self.graceful:
                    self._replace(name)
            for name, child in list(self.children.items()):
                if child.poll() is not None and not self.stopping:
                    if not self.ever_up:
                        print(f"rosetta: {name} could not start (status {child.returncode}); stopping.", flush=True)
                        self._stop_all()
                        return 1
                    self._restart(name, child.returncode)
            self.retiring = [child for child in self.retiring if child.poll() is None]
            self.ever_up = self.ever_up or time.monotonic() - self.launched > STARTUP_GRACE
            time.sleep(0.2)
        return self._stop_all()

    def _request_stop(self, signum, frame) -> None:
        self.stopping = True

    def _request_replace(self, signum, frame) -> None:
        self.replace_wanted = True

    def _spawn(self, name: str) -> tuple[subprocess.Popen, int | None]:
        """The child, and for one replaced gracefully the descriptor its readiness comes on."""
        fds = list(self.pass_fds.get(name, ()))
        env = None
        ready_read = ready_write = None
        if name in self.graceful:
            ready_read, ready_write = os.pipe()
            fds.append(ready_write)
            env = {**os.environ, READY_FD_ENV: str(ready_write)}
        try:
            child = subprocess.Popen(
                dies_with_parent(self.commands[name]), start_new_session=True, pass_fds=fds, env=env
            )
        finally:
            if ready_write is not None:
                os.close(ready_write)
        self.started[name] = time.monotonic()
        return child, ready_read

    def _start(self, name: str) -> None:
        self.children[name], ready = self._spawn(name)
        if ready is not None:
            os.close(ready)  # nothing to wait for: there is no old one to replace

    def _replace(self, name: str) -> None:
        """Start a new ``name`` beside the old one; once it is ready the old one finishes its
        connections and exits. If the new one never gets ready, the old one stays."""
        old = self.children[name]
        new, ready = self._spawn(name)
        try:
            answered, _, _ = select.select([ready], [], [], READY_TIMEOUT)
            is_ready = bool(answered) and os.read(ready, 64).startswith(b"ready")
        finally:
            os.close(ready)
        if not is_ready:
            print(f"rosetta: the new {name} did not start; the old one goes on.", flush=True)
            _end(new, signal.SIGKILL)
            return
        self.children[name] = new
        if old.poll() is None:
            old.terminate()  # it stops accepting and drains
            self.retiring.append(old)
        print(f"rosetta: {name} replaced", flush=True)

    def _restart(self, name: str, returncode: int) -> None:
        ran_for = time.monotonic() - self.started[name]
        self.backoff[name] = (
            0.0 if ran_for > HEALTHY_AFTER else min(max(1.0, self.backoff[name] * 2), RESTART_BACKOFF_MAX)
        )
        print(f"rosetta: {name} ended with status {returncode}; restarting in {self.backoff[name]:g} s", flush=True)
        deadline = time.monotonic() + self.backoff[name]
        while time.monotonic() < deadline and not self.stopping:
            time.sleep(0.1)
        if not self.stopping:
            self._start(name)

    def _stop_all(self) -> int:
        # Stopping Rosetta is no replacement: what would drain (SIGTERM) is told to stop now.
        now = {self.children[name] for name in self.graceful if name in self.children} | set(self.retiring)
        everyone = [*self.children.values(), *self.retiring]
        for child in everyone:
            if child.poll() is None:
                child.send_signal(signal.SIGINT if child in now else signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in everyone:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _end(child, signal.SIGKILL)
        return 0


def _end(child: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(sig)
    child.wait()
