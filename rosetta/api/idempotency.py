"""``Idempotency-Key`` on POSTs: a retried request gets the first answer, not a second effect.

The effect and the record of its answer are written in one transaction, so a request that
died half-way left neither, and its retry simply runs. Keys are per user and kept for a day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from rosetta.api.models import IdempotentRequest
from rosetta.core.errors import Conflict

HEADER = "Idempotency-Key"
KEPT_FOR = timedelta(days=1)
MAX_KEY = 255


class InvalidKey(ValueError):
    pass


def _key_of(request: HttpRequest) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY or not key.isascii() or not key.isprintable():
        raise InvalidKey(f"{HEADER} must be 1 to {MAX_KEY} printable ASCII characters.")
    return key


def respond_once(
    request: HttpRequest, answer: Callable[[], tuple[int, dict]], *, replayable: bool = True
) -> tuple[int, dict, bool]:
    """Run ``answer`` (status, JSON body) unless this user's key was used before; then give
    the first answer again. Returns (status, body, replayed). With ``replayable`` False (the
    answer holds a secret shown once), a repeat is refused instead."""
    key = _key_of(request)
    if key is None:
        status, body = answer()
        return status, body, False
    operation = f"{request.method} {request.path}"
    fingerprint = hashlib.sha256(request.body).hexdigest()
    try:
        with transaction.atomic():
            previous = IdempotentRequest.objects.filter(user=request.auth, key=key).first()
            if previous is None:
                status, body = answer()
                IdempotentRequest.objects.create(
                    user=request.auth,
                    key=key,
                    operation=operation,
                    fingerprint=fingerprint,
                    status=status,
                    response=body if replayable else None,
                )
                IdempotentRequest.objects.filter(created__lt=timezone.now() - KEPT_FOR).delete()
                return status, body, False
    except IntegrityError:  # the same key, sent twice at once: the other one won
        previous = IdempotentRequest.objects.get(user=request.auth, key=key)
    if previous.operation != operation or previous.fingerprint != fingerprint:
        raise Conflict(f"This {HEADER} was already used for a different request.")
    if previous.response is None:
        raise Conflict(f"This {HEADER} was already used; what it created was shown only once.")
    return previous.status, previous.response, True


def answer_once(
    request: HttpRequest, answer: Callable[[], tuple[int, dict]], *, replayable: bool = True
) -> JsonResponse:
    """The answer to a POST, given once per Idempotency-Key, as the response the API sends."""
    status, body, replayed = respond_once(request, answer, replayable=replayable)
    response = JsonResponse(body, status=status)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response
