"""The pusher: keeps the platform's registry in line with the catalogue, away from requests.

Level-triggered, like the controller: each pass (handed in by whoever runs the pusher: the
catalogue's ``rosetta.catalog.pushes.reconcile_catalogue``) reads every software entry and this
machine's image list, and pushes what is not in the registry as it is now — an entry just added (API),
an image changed or rebuilt, an entry left ``pushing`` by a pusher that was killed, a failed
copy due for another try. It wakes at once when signalled (``rosetta.core.notify``: the API after
adding software, ``image_for`` when a task waits for a copy) and otherwise every ``POLL`` seconds
(the loop is rosetta.core.worker's, the builder's too). Pushes run one at a time; the private
writer they go through is started at the first push and kept (restarted if it dies).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable

from rosetta.core.worker import run_worker
from rosetta.registry import PUSHER
from rosetta.registry.config import registry_home
from rosetta.registry.push import PushFailed, Writer

log = logging.getLogger("rosetta.registry")
POLL = 10.0
STALE_WRITER = 2 * 3600.0  # longer than any push (PUSH_TIMEOUT) could keep a writer


def run_pusher(one_pass: Callable[[Callable[[], Writer]], list[str]], poll: float = POLL) -> None:
    """Run ``one_pass(get_writer)`` at every wake-up and poll, logging the lines it returns; a
    writer is started the first time ``get_writer`` is called, and kept."""
    remove_stale_writers()
    with contextlib.ExitStack() as stack:  # SIGTERM comes through it: the writer stops, its directory goes
        writers: list[Writer] = []

        def get_writer() -> Writer:
            if not writers:
                writers.append(stack.enter_context(Writer()))
            return writers[0]

        def push_pass() -> list[str]:
            try:
                return one_pass(get_writer)
            except PushFailed as error:  # no writer could start: said, not a traceback; the next pass tries again
                log.warning("Pushing to the platform's registry: %s", error)
                return []

        run_worker("registry's pusher", PUSHER, push_pass, poll, log)


def remove_stale_writers(older_than: float = STALE_WRITER) -> None:
    """Directories of writers whose process was killed (each holds a password no writer checks any more)."""
    for directory in registry_home().glob("writer-*"):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - directory.stat().st_mtime > older_than:
                shutil.rmtree(directory, ignore_errors=True)
