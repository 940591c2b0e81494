"""Keeps the platform's processes running for `rosetta run`."""

from __future__ import annotations

import signal
import subprocess
import time

RESTART_BACKOFF_MAX = 30.0
HEALTHY_AFTER = 10.0  # a child that ran this long is restarted without delay
STARTUP_GRACE = 5.0


class Supervisor:
    def __init__(self, commands: dict[str, list[str]]) -> None:
        self.commands = commands
        self.children: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}
        self.backoff: dict[str, float] = dict.fromkeys(commands, 0.0)
        self.stopping = False
        self.ever_up = False  # a child dying before this is a set-up problem, not a crash
        self.launched = 0.0

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request_stop)
        for name in self.commands:
            self._start(name)
        self.launched = time.monotonic()
        while not self.stopping:
            for name, child in list(self.children.items()):
                if child.poll() is not None and not self.stopping:
                    if not self.ever_up:
                        print(f"rosetta: {name} could not start (status {child.returncode}); stopping.", flush=True)
                        self._stop_all()
                        return 1
                    self._restart(name, child.returncode)
            self.ever_up = self.ever_up or time.monotonic() - self.launched > STARTUP_GRACE
            time.sleep(0.2)
        return self._stop_all()

    def _request_stop(self, signum, frame) -> None:
        self.stopping = True

    def _start(self, name: str) -> None:
        self.children[name] = subprocess.Popen(self.commands[name], start_new_session=True)
        self.started[name] = time.monotonic()

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
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 10
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 0
