"""Who may open a task's origin: one-time access tokens and the cookie they become.

The platform (Django) mints a short-lived, one-time token when the owner clicks "Open"
and posts it to the task's origin (``LOGIN_PATH``). The gateway redeems it there and sets
a host-only cookie, so no secret stays in a URL and tasks cannot read each other's cookies.

Both are HMAC-SHA256 signatures over a small payload, under a key derived from Django's
SECRET_KEY. Each kind of signature has its own purpose label, so a cookie can never be
replayed as a token or the other way round. Cookies are self-contained (they survive a
gateway restart); tokens carry a random nonce that the verifier remembers until expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

COOKIE_NAME = "rosetta-task-access"
LOGIN_PATH = "/.rosetta/login"

_KEY_LABEL = b"rosetta.gateway.access.v1"
_TOKEN_PURPOSE = b"token"
_COOKIE_PURPOSE = b"cookie"
_COOKIE_CACHE_SIZE = 4096


def access_key(secret_key: str) -> bytes:
    """The gateway's signing key, domain-separated from every other use of SECRET_KEY."""
    return hmac.new(secret_key.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _sign(key: bytes, purpose: bytes, task_id: str, payload: str) -> str:
    message = b"\0".join((purpose, task_id.encode(), payload.encode()))
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint_access_token(key: bytes, user_id: int, task_id: str, ttl: float = 30.0, now: float | None = None) -> str:
    """A one-time token that lets ``user_id`` open ``task_id`` within ``ttl`` seconds.

    The task id is bound by the signature, not carried in the token: the gateway knows
    which origin the token was posted to.
    """
    expires = int((time.time() if now is None else now) + ttl)
    payload = f"{int(user_id)}.{expires}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_sign(key, _TOKEN_PURPOSE, task_id, payload)}"


def _split_signed(value: str, fields: int) -> tuple[list[str], str] | None:
    parts = value.split(".")
    if len(parts) != fields + 1:
        return None
    return parts[:fields], ".".join(parts[:fields])


def _parse_user_and_expiry(user: str, expires: str) -> tuple[int, int] | None:
    if not (user.isdigit() and expires.isdigit()):
        return None
    return int(user), int(expires)


class AccessVerifier:
    """Redeems access tokens and issues/checks access cookies for one gateway process."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._used_nonces: dict[str, float] = {}
        # cookie value -> (task_id, user_id, expires): repeat requests skip the HMAC.
        self._verified_cookies: dict[str, tuple[str, int, int]] = {}

    def redeem(self, token: str, task_id: str, now: float | None = None) -> int | None:
        """The user the token was minted for, or None; a token is accepted only once."""
        now = time.time() if now is None else now
        split = _split_signed(token, 3)
        if split is None:
            return None
        (user, expires, nonce), payload = split
        parsed = _parse_user_and_expiry(user, expires)
        if parsed is None or not nonce:
            return None
        user_id, expiry = parsed
        signature = token[len(payload) + 1 :]
        if not hmac.compare_digest(signature, _sign(self._key, _TOKEN_PURPOSE, task_id, payload)):
            return None
        if expiry <= now:
            return None
        self._forget_expired_nonces(now)
        if nonce in self._used_nonces:
            return None
        self._used_nonces[nonce] = expiry
        return user_id

    def _forget_expired_nonces(self, now: float) -> None:
        expired = [nonce for nonce, expiry in self._used_nonces.items() if expiry <= now]
        for nonce in expired:
            del self._used_nonces[nonce]

    def make_cookie(self, user_id: int, task_id: str, ttl: float = 12 * 3600, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + ttl)
        payload = f"{int(user_id)}.{expires}"
        return f"{payload}.{_sign(self._key, _COOKIE_PURPOSE, task_id, payload)}"

    def check_cookie(self, value: str, task_id: str, now: float | None = None) -> int | None:
        """The user a cookie was issued to for ``task_id``, or None if invalid or expired."""
        now = time.time() if now is None else now
        cached = self._verified_cookies.get(value)
        if cached is None:
            cached = self._verify_cookie(value, task_id)
            if cached is None:
                return None
        cached_task, user_id, expiry = cached
        if cached_task != task_id or expiry <= now:
            return None
        return user_id

    def _verify_cookie(self, value: str, task_id: str) -> tuple[str, int, int] | None:
        split = _split_signed(value, 2)
        if split is None:
            return None
        (user, expires), payload = split
        parsed = _parse_user_and_expiry(user, expires)
        if parsed is None:
            return None
        signature = value[len(payload) + 1 :]
        if not hmac.compare_digest(signature, _sign(self._key, _COOKIE_PURPOSE, task_id, payload)):
            return None
        if len(self._verified_cookies) >= _COOKIE_CACHE_SIZE:
            # Evict the oldest entry; dicts keep insertion order.
            del self._verified_cookies[next(iter(self._verified_cookies))]
        verified = (task_id, *parsed)
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
