"""Each task's secret: what its interface demands on every request, and only the gateway sends.

The platform hands it to the container as ``ROSETTA_TASK_SECRET`` (in the task's 0600
environment file, never an argv) and the gateway adds ``Authorization: Bearer <secret>`` to
every request it forwards to the task (images/README.md, "Per-task secret"). Someone who
reaches the interface's port without the gateway — another account on a shared host or a
cluster node — gets nothing.

Derived, not stored: HMAC-SHA256 of the task id under a key derived (HKDF) from the
installation's SECRET_KEY, 32 bytes. The controller, which writes it into the environment
file, and the gateway, which presents it, compute the same value from what they already
know, so nothing secret is written to the database (no column a copy of it would reveal,
sealed or not, and no write on the start path), and a restarted process needs nothing to
find it again. It rests on SECRET_KEY exactly as sealed secrets (rosetta.core.sealing) do;
changing SECRET_KEY changes every task's secret, so running tasks of the built-in images then
refuse the gateway until they are started again. Task ids are never reused while a task
exists, so no two live tasks share a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import cache, lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_PURPOSE = b"rosetta.task-secret.v1"


@cache
def _key(secret_key: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(secret_key.encode())


def task_secret(task_id: str) -> str:
    """The task's secret: 256 bits, URL-safe base64 without padding (43 characters)."""
    return _secret(settings.SECRET_KEY, task_id)


def authorization_header(task_id: str) -> bytes:
    """The header line the gateway adds to each request it forwards to the task."""
    return b"Authorization: Bearer " + _secret(settings.SECRET_KEY, task_id).encode() + b"\r\n"


@lru_cache(maxsize=65536)  # the route table is rebuilt often, with mostly the same tasks
def _secret(secret_key: str, task_id: str) -> str:
    digest = hmac.new(_key(secret_key), task_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
