"""Telling a full platform disk from other failures (rosetta.core.disk)."""

import errno
import sqlite3

from django.db import IntegrityError, OperationalError

from rosetta.core.disk import is_disk_full


def test_a_full_disk_is_told_apart_from_other_database_and_file_errors():
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as raw:
            raise OperationalError(*raw.args) from raw
    except OperationalError as wrapped:
        assert is_disk_full(wrapped)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OperationalError("database is locked"))
    assert not is_disk_full(IntegrityError("UNIQUE constraint failed"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(None)
