"""The identity provider (OpenID Connect), through Authlib: the login's client (authorization code
with PKCE; discovery, JWKS and the ID token's checks are Authlib's), and the check of access tokens
the provider issued to external platforms for this platform's API — a JWT against the provider's
JWKS (joserfc, Authlib's JOSE library), or RFC 7662 introspection.

Nothing about tokens is written by hand here: this module decides only what to ask and what
each refusal tells the client."""

from __future__ import annotations

import threading

import httpx
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.django_client import OAuth
from django.conf import settings
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from rosetta.accounts import identity

NAME = "provider"
LOGIN_SCOPE = "openid profile email groups"
TIMEOUT = 10  # seconds for each request to the provider
LEEWAY = 30  # seconds of clock difference allowed on exp/nbf/iat
ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt"}  # RFC 9068

__all__ = ["OAuthError", "BearerRefused", "ProviderUnavailable", "configured", "client", "person"]


class BearerRefused(Exception):
    """A provider's token this platform does not accept, and why (answered 401)."""


class ProviderUnavailable(Exception):
    """The provider did not answer as it should (answered 503: nothing is wrong with the token)."""


def configured() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_CLIENT_ID)


_lock = threading.Lock()
_registry: OAuth | None = None


def client():
    """Authlib's client for the configured provider (discovery and JWKS fetched once, then cached)."""
    global _registry
    with _lock:
        if _registry is None:
            registry = OAuth()
            registry.register(
                name=NAME,
                client_id=settings.OIDC_CLIENT_ID,
                client_secret=settings.OIDC_CLIENT_SECRET,
                server_metadata_url=f"{settings.OIDC_ISSUER}/.well-known/openid-configuration",
                client_kwargs={"scope": LOGIN_SCOPE, "code_challenge_method": "S256", "default_timeout": TIMEOUT},
            )
            _registry = registry
        return _registry.create_client(NAME)


def metadata() -> dict:
    try:
        return client().load_server_metadata()
    except (requests.RequestException, ValueError) as error:
        raise ProviderUnavailable(f"The identity provider ({settings.OIDC_ISSUER}) does not answer: {error}") from None


def person(claims: dict) -> identity.Person:
    """The person validated claims describe, under this platform's claim settings."""
    return identity.person_from_claims(
        claims, settings.OIDC_ISSUER, settings.OIDC_USERNAME_CLAIM, settings.OIDC_GROUPS_CLAIM,
        settings.OIDC_STAFF_GROUP,
    )  # fmt: skip


def login_claims(token: dict) -> dict:
    """What a login's validated ID token says, completed from the provider's userinfo when the ID
    token leaves out the name or the groups (many providers put them only there)."""
    claims = dict(token.get("userinfo") or {})
    if claims.get(settings.OIDC_USERNAME_CLAIM) and settings.OIDC_GROUPS_CLAIM in claims:
        return claims
    try:
        profile = client().userinfo(token=token)
    except (requests.RequestException, OAuthError, ValueError) as error:
        raise ProviderUnavailable(f"The identity provider's userinfo did not answer: {error}") from None
    if profile.get("sub") != claims.get("sub"):
        return claims  # (OpenID Connect Core 5.3.2: a userinfo for another subject is not used)
    return {**profile, **claims}


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


# ------------------------------------------------------------------ external platforms' tokens


def bearer_claims(token: str) -> dict:
    """The claims of a provider's access token meant for this platform's API, checked; or
    BearerRefused saying why not."""
    if settings.OIDC_INTROSPECTION:
        return _introspected(token)
    if not looks_like_jwt(token):
        raise BearerRefused("This token is neither an API token of this platform nor a JWT of its identity provider.")
    return _jwt_claims(token)


def _jwt_claims(token: str) -> dict:
    registry = JWSRegistry(algorithms=metadata().get("id_token_signing_alg_values_supported") or ["RS256"])
    try:
        try:
            decoded = jwt.decode(token, KeySet.import_key_set(_jwks()), registry=registry)
        except InvalidKeyIdError:  # the provider may have rotated its keys since they were fetched
            decoded = jwt.decode(token, KeySet.import_key_set(_jwks(force=True)), registry=registry)
    except BadSignatureError:
        raise BearerRefused("The token's signature does not match the identity provider's keys.") from None
    except InvalidKeyIdError:
        raise BearerRefused("The token was not signed with any of the identity provider's keys.") from None
    except (JoseError, ValueError):
        raise BearerRefused("This token is not a JWT the identity provider issued.") from None
    typ = str(decoded.header.get("typ", "")).lower()
    if typ not in ACCESS_TOKEN_TYPES and "nonce" in decoded.claims:
        raise BearerRefused("This is an ID token; send an access token issued for this platform's API.")
    _check_claims(decoded.claims)
    return decoded.claims


def _jwks(force: bool = False) -> dict:
    try:
        return client().fetch_jwk_set(force=force)
    except (requests.RequestException, ValueError, RuntimeError) as error:
        raise ProviderUnavailable(f"The identity provider's keys could not be fetched: {error}") from None


def _check_claims(claims: dict) -> None:
    registry = jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": settings.OIDC_ISSUER},
        aud={"essential": True, "value": settings.OIDC_API_AUDIENCE},
        exp={"essential": True},
        sub={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise BearerRefused("The identity provider's token has expired: get a new one.") from None
    except InvalidClaimError as error:
        raise BearerRefused(_claim_problem(error.claim, claims)) from None
    except MissingClaimError as error:
        raise BearerRefused(f"The token has no {error.claim!r} claim, which this platform needs.") from None
    except JoseError as error:
        raise BearerRefused(f"The token's claims are not acceptable: {error.description or error.error}.") from None


def _claim_problem(claim: str, claims: dict) -> str:
    if claim == "aud":
        return (
            f"The token was not issued for this platform (its audience is {claims.get('aud')!r}; this platform's "
            f"API is {settings.OIDC_API_AUDIENCE!r}): ask the identity provider for a token for this platform."
        )
    if claim == "iss":
        return f"The token was not issued by this platform's identity provider ({settings.OIDC_ISSUER})."
    return f"The token's {claim!r} claim is not acceptable (not yet valid, or wrong)."


def _introspected(token: str) -> dict:
    endpoint = metadata().get("introspection_endpoint")
    if not endpoint:
        raise ProviderUnavailable("The identity provider offers no token introspection (ROSETTA_OIDC_INTROSPECTION).")
    try:
        answer = httpx.post(
            endpoint, data={"token": token, "token_type_hint": "access_token"}, timeout=TIMEOUT,
            auth=(settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET), headers={"Accept": "application/json"},
        )  # fmt: skip
        answer.raise_for_status()
        claims = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        raise ProviderUnavailable(f"The identity provider's token introspection failed: {error}") from None
    if not isinstance(claims, dict) or claims.get("active") is not True:
        raise BearerRefused("The identity provider says this token is not active (expired, revoked or unknown).")
    claims.setdefault("iss", settings.OIDC_ISSUER)
    if "exp" not in claims:
        raise BearerRefused("The identity provider's answer for this token gives no expiry.")
    _check_claims(claims)
    return claims


def claims_with_profile(token: str, claims: dict) -> dict:
    """The token's claims, completed from the provider's userinfo when they do not name the user
    (needed once, when the user is created)."""
    if claims.get(settings.OIDC_USERNAME_CLAIM):
        return claims
    try:
        profile = client().userinfo(token={"access_token": token, "token_type": "Bearer"})
    except (requests.RequestException, OAuthError, ValueError) as error:
        raise BearerRefused(
            f"The token does not say who its user is (no {settings.OIDC_USERNAME_CLAIM!r} claim), and the identity "
            f"provider's userinfo did not either ({error}). Log in to this platform once first."
        ) from None
    if profile.get("sub") != claims.get("sub"):
        raise BearerRefused("The identity provider's userinfo describes another user than the token.")
    return {**profile, **claims}
