from ninja.security import HttpBearer, SessionAuth

from rosetta.accounts.models import ApiToken
from rosetta.accounts.tokens import hash_token

DEACTIVATED = "deactivated"  # request.rosetta_token_refusal: why a token was refused, for its holder


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for scripts and the CLI."""

    def authenticate(self, request, token: str):
        user = ApiToken.objects.user_for(token)
        if user is None and ApiToken.objects.filter(digest=hash_token(token), user__is_active=False).exists():
            # Only whoever holds the token learns that its account is deactivated, not that it exists.
            request.rosetta_token_refusal = DEACTIVATED
        return user


session_or_token = [TokenAuth(), SessionAuth()]
