"""Who may open a task's origin: one-time access tokens and the cookie they become.

The platform (Django) mints a short-lived, one-time token when the owner clicks "Open"
and posts it to the task's origin (``LOGIN_PATH``). The gateway redeems it there and sets
a host-only cookie, so no secret stays in a URL and tasks cannot read each other's cookies.

Both are HMAC-SHA256 signatures over a small payload, under a key derived from Django's
SECRET_KEY. Each kind of signature has its own purpose label, so a cookie can never be
replayed as a token or the other way round. Both carry the user's access epoch
(``rosetta.accounts.models.AccessEpoch``): logging out or being deactivated moves the user to a
new epoch, and the gateway accepts only the current one. Cookies are self-contained (they
survive a gateway restart); tokens carry a random nonce that ``used_tokens`` remembers until
expiry, for every gateway process alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import NamedTuple

COOKIE_NAME = "rosetta-task-access"
# Over https the cookie is a __Host- cookie: browsers then refuse it unless it is Secure,
# host-only and for Path=/, so no sibling origin can set or shadow it.
SECURE_COOKIE_NAME = "__Host-" + COOKIE_NAME
LOGIN_PATH = "/.rosetta/login"

_KEY_LABEL = b"rosetta.gateway.access.v1"
_TOKEN_PURPOSE = b"token.v2"
_COOKIE_PURPOSE = b"cookie.v2"
_COOKIE_CACHE_SIZE = 4096


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE_NAME if secure else COOKIE_NAME


def access_key(secret_key: str) -> bytes:
    """The gateway's signing key, domain-separated from every other use of SECRET_KEY."""
    return hmac.new(secret_key.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _sign(key: bytes, purpose: bytes, task_id: str, payload: str) -> str:
    message = b"\0".join((purpose, task_id.encode(), payload.encode()))
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint_access_token(
    key: bytes, user_id: int, task_id: str, *, epoch: int, ttl: float = 30.0, now: float | None = None
) -> str:
    """A one-time token that lets ``user_id`` open ``task_id`` within ``ttl`` seconds, while
    the user stays in access ``epoch``.

    The task id is bound by the signature, not carried in the token: the gateway knows
    which origin the token was posted to.
    """
    expires = int((time.time() if now is None else now) + ttl)
    payload = f"{int(user_id)}.{int(epoch)}.{expires}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_sign(key, _TOKEN_PURPOSE, task_id, payload)}"


class OneTimeToken(NamedTuple):
    user_id: int
    epoch: int
    expires: int
    nonce: str  # what makes it one-time: remembered as used until ``expires``


class CookieHolder(NamedTuple):
    user_id: int
    epoch: int


def _verified_fields(key: bytes, purpose: bytes, value: str, task_id: str, count: int) -> list[str] | None:
    """The ``count`` payload fields of a signed ``value`` (user, epoch, expiry, then any
    others), or None if anything is off."""
    *fields, signature = value.split(".")
    if len(fields) != count or not all(fields) or not all(field.isdigit() for field in fields[:3]):
        return None
    if not hmac.compare_digest(signature, _sign(key, purpose, task_id, ".".join(fields))):
        return None
    return fields


class AccessVerifier:
    """Reads access tokens and issues/checks access cookies for one gateway process."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        # cookie value -> (task_id, holder, expires): repeat requests skip the HMAC.
        self._verified_cookies: dict[str, tuple[str, CookieHolder, int]] = {}

    def read_token(self, token: str, task_id: str, now: float | None = None) -> OneTimeToken | None:
        """What a token minted for ``task_id`` says, if its signature holds and it has not
        expired. Whether it was used already is for ``used_tokens`` to say."""
        fields = _verified_fields(self._key, _TOKEN_PURPOSE, token, task_id, 4)
        if fields is None:
            return None
        user, epoch, expires, nonce = fields
        if int(expires) <= (time.time() if now is None else now):
            return None
        return OneTimeToken(int(user), int(epoch), int(expires), nonce)

    def make_cookie(
        self, user_id: int, task_id: str, *, epoch: int, ttl: float = 12 * 3600, now: float | None = None
    ) -> str:
        expires = int((time.time() if now is None else now) + ttl)
        payload = f"{int(user_id)}.{int(epoch)}.{expires}"
        return f"{payload}.{_sign(self._key, _COOKIE_PURPOSE, task_id, payload)}"

    def check_cookie(self, value: str, task_id: str, now: float | None = None) -> CookieHolder | None:
        """Who a cookie was issued to for ``task_id``, and in which epoch; None if invalid or expired."""
        now = time.time() if now is None else now
        cached = self._verified_cookies.get(value)
        if cached is None:
            cached = self._verify_cookie(value, task_id)
            if cached is None:
                return None
        cached_task, holder, expiry = cached
        if cached_task != task_id or expiry <= now:
            return None
        return holder

    def _verify_cookie(self, value: str, task_id: str) -> tuple[str, CookieHolder, int] | None:
        fields = _verified_fields(self._key, _COOKIE_PURPOSE, value, task_id, 3)
        if fields is None:
            return None
        if len(self._verified_cookies) >= _COOKIE_CACHE_SIZE:
            # Evict the oldest entry; dicts keep insertion order.
            del self._verified_cookies[next(iter(self._verified_cookies))]
        user, epoch, expires = fields
        verified = (task_id, CookieHolder(int(user), int(epoch)), int(expires))
        self._verified_cookies[value] = verified
        return verified


def task_id_from_host(host: str, tasks_domain: str) -> str | None:
    """The task id addressed by a Host header, or None for the platform itself.

    ``t1.localhost:8000`` -> ``t1`` for tasks_domain ``localhost``; only a single label
    directly under the tasks domain names a task.
    """
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal is never a task origin
        return None
    host = host.rpartition(":")[0] if ":" in host else host
    host = host.rstrip(".")
    suffix = "." + tasks_domain.lower().rstrip(".")
    if not host.endswith(suffix):
        return None
    label = host[: -len(suffix)]
    if not label or "." in label:
        return None
    return label


def safe_next_path(next_path: str) -> str:
    """``next_path`` if it stays on this origin, else "/" (no open redirect, no header injection)."""
    if not next_path.startswith("/") or next_path.startswith(("//", "/\\")):
        return "/"
    if not all("\x21" <= char <= "\x7e" for char in next_path):
        return "/"
    return next_path
