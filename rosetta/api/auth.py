from ninja.security import HttpBearer, SessionAuth

from rosetta.accounts.models import ApiToken


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for scripts and the CLI."""

    def authenticate(self, request, token: str):
        return ApiToken.objects.user_for(token)


session_or_token = [TokenAuth(), SessionAuth()]
