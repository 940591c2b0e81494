"""Secrets the platform keeps (SSH private keys), sealed at rest.

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under a key derived from the
installation's SECRET_KEY with HKDF: a copy of the database alone reveals no key. Changing the
SECRET_KEY makes sealed secrets unreadable: they must then be set again.
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_PURPOSE = b"rosetta.sealing.v1"


class Unsealable(Exception):
    """The sealed secret was made under another SECRET_KEY, or altered."""


@cache
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str) -> str:
    return _fernet(settings.SECRET_KEY).encrypt(secret.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return _fernet(settings.SECRET_KEY).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise Unsealable("This secret was sealed under another SECRET_KEY; set it again.") from None
