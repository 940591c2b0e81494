from ninja.security import HttpBearer, SessionAuth

from rosetta.accounts.models import ApiToken
from rosetta.accounts.tokens import ADMIN, SCOPES, hash_token
from rosetta.api import scopes

DEACTIVATED = "deactivated"  # request.rosetta_token_refusal: why a token was refused, for its holder
API_ROOT = "/api/"


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for scripts and the CLI, within the token's scopes."""

    def authenticate(self, request, token: str):
        found = ApiToken.objects.token_for(token)
        if found is None:
            if ApiToken.objects.filter(digest=hash_token(token), user__is_active=False).exists():
                # Only whoever holds the token learns that its account is deactivated, not that it exists.
                request.rosetta_token_refusal = DEACTIVATED
            return None
        held = found.scope_set
        scopes.check(held, request.method, request.path_info.removeprefix(API_ROOT))
        request.token_scopes = held
        user = found.user
        if user.is_staff and ADMIN not in held:
            # A staff member's token without the admin scope acts as an ordinary user: everything
            # that asks whether the user is staff gets "no" for this request (never saved).
            user.is_staff = user.is_superuser = False
        return user


def scopes_of(request) -> frozenset[str]:
    """What the request may do: its token's scopes, or everything for a browser session."""
    return getattr(request, "token_scopes", frozenset(SCOPES))


session_or_token = [TokenAuth(), SessionAuth()]
