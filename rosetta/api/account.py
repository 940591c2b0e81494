"""The API of a user's own account: who they are, and their API tokens."""

from django.http import HttpRequest
from ninja import Router

from rosetta.accounts import services as account_services
from rosetta.accounts.models import ApiToken
from rosetta.api.auth import scopes_of
from rosetta.api.idempotency import answer_once
from rosetta.api.schemas import Message, TokenIn, TokenInfoOut, TokenOut, UserOut
from rosetta.core.errors import NotFound

router = Router(tags=["account"])


@router.get("/me", response=UserOut)
def me(request: HttpRequest):
    return request.auth


@router.get("/tokens", response=list[TokenInfoOut])
def list_tokens(request: HttpRequest):
    """Your API tokens, newest first: what each may do, when it was last used, when it expires."""
    return request.auth.api_tokens.order_by("-created", "-pk")


@router.post("/tokens", response={201: TokenOut, 409: Message})
def create_token(request: HttpRequest, payload: TokenIn):
    def create():
        token, secret = account_services.create_token(
            request.auth, payload.name, payload.expires_in_days, payload.scopes, allowed=scopes_of(request)
        )
        expires = token.expires.isoformat() if token.expires else None
        return 201, {"name": payload.name, "token": secret, "expires": expires, "scopes": token.scopes.split()}

    return answer_once(request, create, replayable=False)


@router.delete("/tokens/{name}", response={200: Message, 404: Message})
def revoke_token(request: HttpRequest, name: str):
    """Revoke one of your tokens by its name: refused from the next request on."""
    token = ApiToken.objects.filter(user=request.auth, name=name).first()
    if token is None:
        raise NotFound(f"You have no token called {name!r}.")
    account_services.revoke_token(token)
    return 200, {"detail": f"Token {name} ({token.hint}…) was revoked."}
