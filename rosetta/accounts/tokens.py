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
