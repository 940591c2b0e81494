"""What a task's record leaves out of its environment: values of names that look secret, and
values that carry a password (rosetta.tasks.records.redacted)."""

import pytest

from rosetta.tasks.records import REDACTED, redacted


@pytest.mark.parametrize(
    "name", ["API_TOKEN", "MY_SECRET", "DB_PASSWORD", "DB_PASS", "PGPASS", "MY_PWD", "AUTH", "HF_AUTH",
             "SESSION_COOKIE", "AWS_ACCESS_KEY_ID", "SSH_KEY", "SENTRY_DSN", "TLS_CERT", "PRIVATE_THING"],
)  # fmt: skip
def test_values_of_secret_looking_names_are_left_out_and_the_names_kept(name):
    assert redacted({name: "s3cret"}) == {name: REDACTED}


def test_a_url_with_a_password_is_left_out_and_plain_values_kept():
    kept = redacted({"DATABASE_URL": "postgres://u:s3cret@db/x", "MIRROR": "https://pypi.org/simple", "MODE": "fast"})
    assert kept == {"DATABASE_URL": REDACTED, "MIRROR": "https://pypi.org/simple", "MODE": "fast"}
