"""API tokens: random secrets shown once, stored only as a SHA-256 digest.

A fast hash is right here (unlike passwords): tokens are 256-bit random strings, so a
digest cannot be brute-forced, and the gateway must check one per request in microseconds.
"""

import hashlib
import secrets

TOKEN_PREFIX = "rst_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# What a token may do. A browser session may do all its user may; a token only what it was made for.
READ = "read"  # every GET: look, never change
TASKS = "tasks"  # start, stop, relaunch, delete tasks, open their interfaces; the account's keys and tokens
FILES = "files"  # write, move, copy, delete files in storages
SOFTWARE = "software"  # add, change and build software
ADMIN = "admin"  # a staff member's powers (other users' tasks, resources); without it staff act as users
SCOPES = (READ, TASKS, FILES, SOFTWARE, ADMIN)
USER_SCOPES = (READ, TASKS, FILES, SOFTWARE)  # a new token's, unless it asks for fewer (or, staff, for admin)


def scopes_text(scopes) -> str:
    """How scopes are stored: in SCOPES' order, space-separated (as OAuth writes them)."""
    asked = set(scopes)
    unknown = asked - set(SCOPES)
    if unknown:
        raise ValueError(f"Unknown scope {sorted(unknown)[0]!r}; scopes are {', '.join(SCOPES)}.")
    return " ".join(scope for scope in SCOPES if scope in asked)
