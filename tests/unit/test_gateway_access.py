import pytest

from rosetta.gateway.access import (
    AccessVerifier,
    CookieHolder,
    OneTimeToken,
    access_key,
    mint_access_token,
    safe_next_path,
    task_id_from_host,
)

KEY = access_key("django-insecure-test-secret")
NOW = 1_700_000_000.0


def test_access_key_is_derived_not_the_secret_itself():
    assert KEY != b"django-insecure-test-secret"
    assert len(KEY) == 32
    assert access_key("another secret") != KEY


def test_token_names_its_user_epoch_expiry_and_a_nonce():
    token = mint_access_token(KEY, 7, "t1", epoch=3, ttl=30, now=NOW)
    read = AccessVerifier(KEY).read_token(token, "t1", now=NOW + 1)
    assert read == OneTimeToken(7, 3, int(NOW + 30), read.nonce) and len(read.nonce) >= 16
    assert (
        read.nonce != AccessVerifier(KEY).read_token(mint_access_token(KEY, 7, "t1", epoch=3, now=NOW), "t1", NOW).nonce
    )


def test_token_is_url_safe():
    token = mint_access_token(KEY, 7, "t1", epoch=0, now=NOW)
    assert all(char.isalnum() or char in "-_." for char in token)


def test_expired_token_is_refused():
    token = mint_access_token(KEY, 7, "t1", epoch=0, ttl=30, now=NOW)
    assert AccessVerifier(KEY).read_token(token, "t1", now=NOW + 31) is None


def test_token_for_another_task_is_refused():
    token = mint_access_token(KEY, 7, "t1", epoch=0, now=NOW)
    assert AccessVerifier(KEY).read_token(token, "t2", now=NOW) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # signature
        lambda token: "8" + token[1:],  # user id
        lambda token: token.replace(".", ".9", 1),  # epoch
        lambda token: token.replace(".", "", 1),  # a field less
        lambda token: token + ".extra",
        lambda token: "",
        lambda token: "not-a-token",
    ],
)
def test_tampered_token_is_refused(tamper):
    token = mint_access_token(KEY, 7, "t1", epoch=2, now=NOW)
    assert AccessVerifier(KEY).read_token(tamper(token), "t1", now=NOW) is None


def test_token_signed_with_another_key_is_refused():
    token = mint_access_token(access_key("other"), 7, "t1", epoch=0, now=NOW)
    assert AccessVerifier(KEY).read_token(token, "t1", now=NOW) is None


def test_cookie_round_trip_survives_a_new_verifier():
    cookie = AccessVerifier(KEY).make_cookie(7, "t1", epoch=4, now=NOW)
    assert AccessVerifier(KEY).check_cookie(cookie, "t1", now=NOW + 10) == CookieHolder(7, 4)


def test_cookie_expires_even_when_cached():
    verifier = AccessVerifier(KEY)
    cookie = verifier.make_cookie(7, "t1", epoch=0, ttl=60, now=NOW)
    assert verifier.check_cookie(cookie, "t1", now=NOW) == (7, 0)
    assert verifier.check_cookie(cookie, "t1", now=NOW + 61) is None


def test_cookie_for_another_task_is_refused_cached_or_not():
    verifier = AccessVerifier(KEY)
    cookie = verifier.make_cookie(7, "t1", epoch=0, now=NOW)
    assert AccessVerifier(KEY).check_cookie(cookie, "t2", now=NOW) is None
    assert verifier.check_cookie(cookie, "t1", now=NOW) == (7, 0)
    assert verifier.check_cookie(cookie, "t2", now=NOW) is None


def test_tampered_cookie_is_refused():
    verifier = AccessVerifier(KEY)
    cookie = verifier.make_cookie(7, "t1", epoch=0, now=NOW)
    assert verifier.check_cookie("8" + cookie[1:], "t1", now=NOW) is None
    assert verifier.check_cookie(cookie.replace(".0.", ".1.", 1), "t1", now=NOW) is None  # another epoch
    assert verifier.check_cookie(cookie + "x", "t1", now=NOW) is None
    assert verifier.check_cookie("", "t1", now=NOW) is None


def test_cookie_and_token_are_not_interchangeable():
    verifier = AccessVerifier(KEY)
    token = mint_access_token(KEY, 7, "t1", epoch=0, now=NOW)
    cookie = verifier.make_cookie(7, "t1", epoch=0, now=NOW)
    assert verifier.check_cookie(token, "t1", now=NOW) is None
    assert verifier.read_token(cookie, "t1", now=NOW) is None
    assert verifier.read_token(cookie + ".nonce", "t1", now=NOW) is None


def test_cookie_cache_stays_bounded():
    verifier = AccessVerifier(KEY)
    for user_id in range(5000):
        verifier.check_cookie(verifier.make_cookie(user_id, "t1", epoch=0, now=NOW), "t1", now=NOW)
    assert len(verifier._verified_cookies) <= 4096


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("t1.localhost:8000", "t1"),
        ("t1.localhost", "t1"),
        ("T1.LocalHost:8000", "t1"),
        ("t1.localhost.:8000", "t1"),
        ("localhost:8000", None),
        ("localhost", None),
        ("a.b.localhost", None),
        (".localhost", None),
        ("t1.example.org", None),
        ("evil-localhost:8000", None),
        ("127.0.0.1:8000", None),
        ("[::1]:8000", None),
        ("", None),
    ],
)
def test_task_id_from_host(host, expected):
    assert task_id_from_host(host, "localhost") == expected


def test_task_id_from_host_with_a_real_domain():
    assert task_id_from_host("abc.tasks.example.org", "tasks.example.org") == "abc"
    assert task_id_from_host("tasks.example.org", "tasks.example.org") is None


@pytest.mark.parametrize(
    ("next_path", "expected"),
    [
        ("/lab?x=1", "/lab?x=1"),
        ("/", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("lab", "/"),
        ("", "/"),
        ("/a\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_safe_next_path(next_path, expected):
    assert safe_next_path(next_path) == expected
