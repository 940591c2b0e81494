from django.conf import settings
from ninja.security import HttpBearer, SessionAuth

from rosetta.accounts import identity, provider
from rosetta.accounts.models import ApiToken, ExternalIdentity
from rosetta.accounts.tokens import ADMIN, SCOPES, TOKEN_PREFIX, hash_token
from rosetta.api import scopes

DEACTIVATED = "deactivated"  # request.rosetta_token_refusal: why a token was refused, for its holder
API_ROOT = "/api/"


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for scripts and the CLI, within the token's scopes: an API
    token of this platform, or an access token its identity provider issued for this platform's
    API to an external platform (mapped to the same user as the provider's logins)."""

    def authenticate(self, request, token: str):
        found = ApiToken.objects.token_for(token)
        if found is not None:
            return _as_token_allows(request, found.user, found.scope_set)
        if ApiToken.objects.filter(digest=hash_token(token), user__is_active=False).exists():
            # Only whoever holds the token learns that its account is deactivated, not that it exists.
            request.rosetta_token_refusal = DEACTIVATED
            return None
        if provider.configured() and not token.startswith(TOKEN_PREFIX):
            # (never one of this platform's own tokens: they must not reach the provider's introspection)
            return _provider_token_user(request, token)
        return None


def _provider_token_user(request, token: str):
    try:
        claims = provider.bearer_claims(token)
        user = _user_of(token, claims)
    except (provider.BearerRefused, identity.Refused) as refusal:
        request.rosetta_token_refusal = str(refusal)
        return None
    held = identity.scopes_from_claim(claims.get("scope"), user.is_staff)
    return _as_token_allows(request, user, held, from_provider=True)


def _user_of(token: str, claims: dict):
    """The user a provider's token belongs to: linked by (issuer, subject); created from the
    provider's claims the first time (groups and staff as at a login)."""
    link = (
        ExternalIdentity.objects.select_related("user")
        .filter(issuer=settings.OIDC_ISSUER, subject=claims["sub"])
        .first()
    )
    if link is None:
        return identity.signed_in_user(provider.person(provider.claims_with_profile(token, claims)))
    if not link.user.is_active:
        raise identity.Refused("This account is deactivated: ask the platform's staff to reactivate it.")
    return link.user


def _as_token_allows(request, user, held: frozenset[str], from_provider: bool = False):
    scopes.check(held, request.method, request.path_info.removeprefix(API_ROOT), from_provider)
    request.token_scopes = held
    if user.is_staff and ADMIN not in held:
        # A staff member's token without the admin scope acts as an ordinary user: everything
        # that asks whether the user is staff gets "no" for this request (never saved).
        user.is_staff = user.is_superuser = False
    return user


def scopes_of(request) -> frozenset[str]:
    """What the request may do: its token's scopes, or everything for a browser session."""
    return getattr(request, "token_scopes", frozenset(SCOPES))


session_or_token = [TokenAuth(), SessionAuth()]
