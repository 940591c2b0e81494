"""The API of a user's own account: who they are, and their API tokens."""

from django.http import HttpRequest
from ninja import Router

from rosetta.accounts import services as account_services
from rosetta.api.idempotency import answer_once
from rosetta.api.schemas import Message, TokenIn, TokenOut, UserOut

router = Router(tags=["account"])


@router.get("/me", response=UserOut)
def me(request: HttpRequest):
    return request.auth


@router.post("/tokens", response={201: TokenOut, 409: Message})
def create_token(request: HttpRequest, payload: TokenIn):
    def create():
        token, secret = account_services.create_token(request.auth, payload.name, payload.expires_in_days)
        expires = token.expires.isoformat() if token.expires else None
        return 201, {"name": payload.name, "token": secret, "expires": expires}

    return answer_once(request, create, replayable=False)
