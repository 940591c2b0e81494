"""The loop of a queue worker (the builder, the registry's pusher): one pass at a time, at every
wake-up (rosetta.core.notify, this machine's datagrams) and otherwise every ``poll`` seconds.

A pass is level-triggered: it reads what is to do from the database and does it, so a lost
wake-up only costs latency, and a pass that fails is logged and tried again at the next one.
SIGTERM ends the loop as SystemExit, through the caller's ``with`` blocks (what it started stops).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterable

from django.db import close_old_connections

from rosetta.core.notify import MAX_TOPIC, socket_path

BURST = 0.02  # seconds to let a burst of wake-ups (several entries added at once) arrive, served by one pass


def run_worker(
    name: str, listener: str, one_pass: Callable[[], Iterable[str]], poll: float, log: logging.Logger
) -> None:
    """Run ``one_pass`` now, then at every wake-up of ``listener`` and every ``poll`` seconds,
    logging the lines it returns (what it did) as ``name``; returns only by SIGTERM or an interrupt."""
    signal.signal(signal.SIGTERM, _exit)
    path = socket_path(listener)
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as wakeups:
        wakeups.bind(str(path))
        log.info("The %s is running.", name)
        while True:
            run_pass(name, one_pass, log)
            wait(wakeups, poll)


def run_pass(name: str, one_pass: Callable[[], Iterable[str]], log: logging.Logger) -> None:
    """One pass, its lines logged; a pass that fails is logged, not raised (the next one tries again)."""
    close_old_connections()  # a connection the database dropped since the last pass is made again
    try:
        for line in one_pass():
            log.info("%s", line)
    except Exception:
        log.exception("The %s failed a pass; it tries again.", name)


def wait(wakeups: socket.socket, timeout: float) -> None:
    """Until a wake-up or ``timeout``; then drain every wake-up already there (one pass serves them all)."""
    wakeups.settimeout(timeout)
    try:
        wakeups.recv(MAX_TOPIC)
    except TimeoutError:
        return
    time.sleep(BURST)
    wakeups.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            wakeups.recv(MAX_TOPIC)


def _exit(signum, frame) -> None:
    raise SystemExit(0)
