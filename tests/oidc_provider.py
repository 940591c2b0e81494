"""The test bed's OpenID Connect provider (testbed/up starts it; testbed.json's ``oidc`` entry
describes it), and what a user's browser or an external platform does with it, over plain HTTP:
the provider's login form filled in, the authorization code exchanged with PKCE."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

LOGIN_BUTTON = "Log in with your institution"


def testbed_dir() -> Path:
    return Path(os.environ.get("ROSETTA_TESTBED_DIR", "/var/lib/rosetta-testbed"))


def description() -> dict:
    """testbed.json's ``oidc`` entry, once the provider answers; the test fails (never skips) otherwise:
    the README's test command starts the test bed."""
    path = testbed_dir() / "testbed.json"
    if not path.exists():
        pytest.fail(f"No test bed ({path} is missing): run testbed/up, as scripts/test.sh does.")
    oidc = json.loads(path.read_text()).get("oidc")
    if not oidc:
        pytest.fail(f"The test bed has no OpenID Connect provider ({path} has no 'oidc'): run testbed/up again.")
    try:
        httpx.get(oidc["discovery"], timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.fail(f"The test bed's OpenID Connect provider does not answer ({error}): run testbed/up.")
    return oidc


def user(oidc: dict, name: str) -> dict:
    return next(u for u in oidc["users"] if u["name"] == name)


def external_client(oidc: dict, access_tokens: str = "jwt") -> dict:
    return next(c for c in oidc["external_clients"] if c["access_tokens"] == access_tokens)


def metadata(oidc: dict) -> dict:
    return httpx.get(oidc["discovery"], timeout=5).raise_for_status().json()


def sign_in_at_provider(browser: httpx.Client, response: httpx.Response, person: dict, stop_at: str) -> httpx.Response:
    """Follow redirects from ``response`` through the provider's login form (filled in as ``person``)
    until one leads to ``stop_at`` (a URL prefix); that redirect, unfollowed."""
    for _ in range(20):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if target.startswith(stop_at):
                return response
            response = browser.get(target)
        elif 'name="password"' in response.text:
            action = re.search(r'<form method="post" action="([^"]+)"', response.text).group(1)
            data = {"username": person["name"], "password": person["password"]}
            response = browser.post(urljoin(str(response.url), action), data=data)
        else:
            raise AssertionError(f"unexpected answer from {response.url}: {response.status_code} {response.text[:500]}")
    raise AssertionError("too many redirects")


def access_token(
    oidc: dict, client: dict, person: dict, scope: str, redirect_port: int, resource: str | None = None
) -> dict:
    """What an external platform gets for its user: the authorization code flow with PKCE (S256)
    through the provider's login form; the provider's token answer."""
    meta = metadata(oidc)
    redirect_uri = f"http://localhost:{redirect_port}{client['redirect_path']}"
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    params = {
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect_uri, "scope": scope,
        "state": state, "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256",
        "resource": resource or oidc["api_audience"],
    }  # fmt: skip
    with httpx.Client(timeout=10) as browser:
        answer = sign_in_at_provider(browser, browser.get(meta["authorization_endpoint"], params=params), person,
                                     redirect_uri)  # fmt: skip
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == [state], query
    exchanged = httpx.post(
        meta["token_endpoint"], auth=(client["client_id"], client["client_secret"]), timeout=10,
        data={"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect_uri,
              "code_verifier": verifier, "resource": resource or oidc["api_audience"]},
    )  # fmt: skip
    assert exchanged.status_code == 200, exchanged.text
    return exchanged.json()


def log_in_over_http(platform, person: dict) -> tuple[httpx.Client, httpx.Response]:
    """A browser-like client that followed the login button's link through the provider as
    ``person``, and the platform's answer at the callback (a redirect once logged in)."""
    browser = httpx.Client(base_url=platform.url, timeout=10)
    start = browser.get("/oidc/login")
    answer = sign_in_at_provider(browser, start, person, f"{platform.url}/oidc/callback")
    return browser, browser.get(answer.headers["location"])


def provider_signed(oidc: dict, claims: dict) -> str:
    """A JWT signed with the provider's own key (the test bed keeps it), for tokens it would not
    issue on demand: expired, or for another audience."""
    keys = json.loads((testbed_dir() / "oidc" / "secrets" / "signing-keys.json").read_text())
    key = KeySet.import_key_set(keys).keys[0]
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, claims, key)


def forged(oidc: dict, claims: dict) -> str:
    """A JWT that claims the provider's key id but was signed by someone else's key."""
    kid = metadata_keys(oidc)[0]["kid"]
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": kid}, claims, RSAKey.generate_key(2048))


def metadata_keys(oidc: dict) -> list[dict]:
    return httpx.get(metadata(oidc)["jwks_uri"], timeout=5).raise_for_status().json()["keys"]


def api_claims(oidc: dict, subject: str, **changes) -> dict:
    now = int(time.time())
    return {
        "iss": oidc["issuer"], "sub": subject, "aud": oidc["api_audience"], "iat": now, "exp": now + 600,
        "scope": "openid read", "client_id": "external-app", "jti": secrets.token_hex(8), **changes,
    }  # fmt: skip
