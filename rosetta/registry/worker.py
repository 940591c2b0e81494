"""The pusher: keeps the platform's registry in line with the catalogue, away from requests.

Level-triggered, like the controller: each pass (handed in by whoever runs the pusher: the
catalogue's ``rosetta.catalog.pushes.reconcile_catalogue``) reads every software entry and this
machine's image list, and pushes what is not in the registry as it is now — an entry just added (API),
an image changed or rebuilt, an entry left ``pushing`` by a pusher that was killed, a failed
copy due for another try. It wakes at once when signalled (``rosetta.core.notify``: the API after
adding software, ``image_for`` when a task waits for a copy) and otherwise every ``POLL`` seconds.
Pushes run one at a time; the private writer they go through is started at the first push and
kept (restarted if it dies).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import time
from collections.abc import Callable

from django.db import close_old_connections

from rosetta.core.notify import MAX_TOPIC, socket_path
from rosetta.registry import PUSHER
from rosetta.registry.config import registry_home
from rosetta.registry.push import PushFailed, Writer

log = logging.getLogger("rosetta.registry")
POLL = 10.0
STALE_WRITER = 2 * 3600.0  # longer than any push (PUSH_TIMEOUT) could keep a writer


def run_pusher(one_pass: Callable[[Callable[[], Writer]], list[str]], poll: float = POLL) -> None:
    """Run ``one_pass(get_writer)`` at every wake-up and poll, logging the lines it returns; a
    writer is started the first time ``get_writer`` is called, and kept."""
    signal.signal(signal.SIGTERM, _exit)  # through the `with` blocks: the writer stops, its directory goes
    remove_stale_writers()
    path = socket_path(PUSHER)
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as wakeups, contextlib.ExitStack() as stack:
        wakeups.bind(str(path))
        writers: list[Writer] = []

        def get_writer() -> Writer:
            if not writers:
                writers.append(stack.enter_context(Writer()))
            return writers[0]

        log.info("The registry's pusher is running.")
        while True:
            close_old_connections()
            try:
                for line in one_pass(get_writer):
                    log.info("%s", line)
            except PushFailed as error:
                log.warning("Pushing to the platform's registry: %s", error)
            except Exception:
                log.exception("The registry's pusher failed a pass; it tries again.")
            _wait(wakeups, poll)


def _exit(signum, frame) -> None:
    raise SystemExit(0)


def remove_stale_writers(older_than: float = STALE_WRITER) -> None:
    """Directories of writers whose process was killed (each holds a password no writer checks any more)."""
    for directory in registry_home().glob("writer-*"):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - directory.stat().st_mtime > older_than:
                shutil.rmtree(directory, ignore_errors=True)


def _wait(wakeups: socket.socket, timeout: float) -> None:
    """Until a wake-up or ``timeout``; then drain every wake-up already there (one pass serves them all)."""
    wakeups.settimeout(timeout)
    try:
        wakeups.recv(MAX_TOPIC)
    except TimeoutError:
        return
    time.sleep(0.02)  # a burst of signals (several entries added at once) is served by one pass
    wakeups.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            wakeups.recv(MAX_TOPIC)
