"""Which scope of an API token each API request needs, decided in one place from the method and
the path: reading needs ``read``; every change needs the scope of the capability it changes.
A browser session is not limited here (its user's own rights apply)."""

from __future__ import annotations

from rosetta.accounts.tokens import ADMIN, FILES, READ, SOFTWARE, TASKS

READING = frozenset({"GET", "HEAD", "OPTIONS"})
# The first part of the path under /api/ → what changing it needs. Keys and tokens open tasks (the
# SSH door, the gateway), so they go with tasks; a token never makes one that can do more than itself.
CHANGES = {
    "tasks": TASKS,
    "tokens": TASKS,
    "me": TASKS,  # /me/keys, /me/ssh-key
    "storages": FILES,
    "software": SOFTWARE,
    "resources": ADMIN,
}
WHAT = {READ: "read", TASKS: "change tasks, keys or tokens", FILES: "change files", SOFTWARE: "change software",
        ADMIN: "use staff powers"}  # fmt: skip


# What only the platform's own credentials change (a session or a platform token): an identity
# provider's token, short-lived and bound to its audience, must not turn into a lasting platform
# token or an SSH key.
PLATFORM_CREDENTIAL_ONLY = frozenset({"tokens", "me"})


class ScopeRefused(Exception):
    """The request's token was not made for it (answered 403 with the reason)."""


def required_scope(method: str, path: str) -> str:
    """The scope a request needs; ``path`` is relative to the API's root (``tasks/abc/stop``).
    A change to a part of the API not listed needs ``admin``: a new endpoint is closed to
    limited tokens until someone says which scope it belongs to."""
    if method.upper() in READING:
        return READ
    return CHANGES.get(path.strip("/").split("/", 1)[0], ADMIN)


def check(scopes: frozenset[str], method: str, path: str, from_provider: bool = False) -> None:
    if from_provider and method.upper() not in READING and path.strip("/").split("/", 1)[0] in PLATFORM_CREDENTIAL_ONLY:
        raise ScopeRefused(
            "An identity provider's token may not make API tokens or register SSH keys: log in to Rosetta for that."
        )
    needed = required_scope(method, path)
    if needed not in scopes:
        held = ", ".join(sorted(scopes)) or "none"
        raise ScopeRefused(f"This API token may not {WHAT[needed]}: that needs the {needed!r} scope (it has: {held}).")
