"""Removes the temporaries of uploads (and copies) whose writer died: a web process killed
mid-upload leaves a hidden ``.rosetta-upload-*`` file that users cannot see and nothing else
removes, taking their space.

A writer holds an exclusive lock (flock) on its temporary for as long as it writes: the kernel
drops it when the writer dies, however it dies. A temporary is abandoned when nobody holds its
lock and it has not changed for ABANDONED_AFTER (the moment between creating it and locking
it, and between the last write and giving it its name, is far shorter). That holds across every
web process on the machine, each sweeping at start and then now and then.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import threading
import time

from rosetta.storage.descriptors import UPLOAD_PREFIX

log = logging.getLogger(__name__)

ABANDONED_AFTER = 15 * 60  # seconds unchanged (and unlocked) after which a temporary is abandoned
SWEEP_EVERY = 60 * 60  # seconds between sweeps of a running web process


def sweep_root(root: str, now: float | None = None) -> int:
    """Remove the abandoned temporaries under ``root`` (links never followed); how many."""
    now = time.time() if now is None else now
    removed = 0
    if not os.path.isdir(root):
        return 0
    for _, _, files, folder in os.fwalk(root, follow_symlinks=False):
        for name in files:
            if name.startswith(UPLOAD_PREFIX) and _remove_if_abandoned(folder, name, now):
                removed += 1
    return removed


def _remove_if_abandoned(folder: int, name: str, now: float) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except OSError:
        return False  # gone meanwhile, or not a file to open
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode) or now - found.st_mtime < ABANDONED_AFTER:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        # Still the file that was checked under that name (names are random: this is a safeguard).
        now_named = os.stat(name, dir_fd=folder, follow_symlinks=False)
        if (now_named.st_dev, now_named.st_ino) != (found.st_dev, found.st_ino):
            return False
        os.unlink(name, dir_fd=folder)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def local_roots() -> list[str]:
    """Every folder of a storage on this machine: each user's own, for storages per user."""
    from django.contrib.auth import get_user_model

    from rosetta.storage.models import Storage, StorageKind
    from rosetta.storage.services import root_of

    roots = set()
    users = list(get_user_model().objects.all())
    for storage in Storage.objects.filter(kind=StorageKind.LOCAL):
        if not storage.per_user:
            roots.add(os.path.normpath(storage.base_path))
            continue
        for user in users:
            with contextlib.suppress(Exception):  # a name that cannot be a folder has none
                roots.add(root_of(storage, user))
    return sorted(roots)


def sweep_all() -> int:
    removed = 0
    for root in local_roots():
        try:
            removed += sweep_root(root)
        except OSError as error:
            log.warning("cannot sweep the upload temporaries of %s: %s", root, error)
    if removed:
        log.info("removed %d temporaries of uploads whose writer had died", removed)
    return removed


def sweep_now_and_then() -> threading.Thread:
    """Sweep at once, then every SWEEP_EVERY, in a thread of this process's own."""

    def sweeping() -> None:
        from django.db import connection

        while True:
            try:
                sweep_all()
            except Exception:  # a sweep that fails must not end the web process
                log.exception("sweeping upload temporaries failed")
            finally:
                connection.close()
            time.sleep(SWEEP_EVERY)

    thread = threading.Thread(target=sweeping, name="upload-sweeper", daemon=True)
    thread.start()
    return thread
