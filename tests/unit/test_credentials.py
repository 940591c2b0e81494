"""Credentials the platform makes: passwords people type, tokens scripts copy."""

import base64
import math

from rosetta.accounts.services import PASSWORD_ALPHABET, PASSWORD_LENGTH, new_password
from rosetta.accounts.tokens import TOKEN_PREFIX, new_token

LOOK_ALIKES = set("0Oo1lI")


def test_made_passwords_have_no_characters_read_one_for_another():
    passwords = [new_password() for _ in range(500)]
    assert not LOOK_ALIKES & set("".join(passwords))
    assert all(len(password) == PASSWORD_LENGTH and password.isalnum() for password in passwords)
    assert len(set(passwords)) == len(passwords)
    assert PASSWORD_LENGTH * math.log2(len(PASSWORD_ALPHABET)) > 100  # bits


def test_api_tokens_keep_256_random_bits():
    token = new_token()
    assert token.startswith(TOKEN_PREFIX)
    body = token.removeprefix(TOKEN_PREFIX)
    assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == 32
