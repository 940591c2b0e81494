"""Limits on failed web logins, per account and per client address (fixed windows).

A blocked login is refused before the password is checked, so guesses made while blocked
tell nothing. API tokens need no such limit: they carry 256 random bits.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from rosetta.gateway.clients import cap_key
from rosetta.web.models import LoginFailures


@dataclass(frozen=True)
class Counter:
    key: str
    limit: int


def client_address(request) -> str:
    """The client's address as the web server reports it, counted as the gateway counts its
    clients (an IPv6 client by its /64, which is what one host is usually given). Behind the
    gateway (on the unix socket only the platform's account can open) that is the address the
    gateway forwards; `rosetta web --port` trusts no forwarding header."""
    return cap_key(request.META.get("REMOTE_ADDR") or "local")


def counters(username: str, address: str) -> tuple[Counter, Counter]:
    return (
        Counter(_digest(f"account:{username}"), settings.LOGIN_FAILURES_PER_ACCOUNT),
        Counter(_digest(f"address:{address}"), settings.LOGIN_FAILURES_PER_ADDRESS),
    )


def blocked_for(counted: tuple[Counter, ...]) -> int:
    """Seconds until a login may be tried again; 0 when it may be tried now."""
    now = timezone.now()
    limits = {counter.key: counter.limit for counter in counted}
    full = LoginFailures.objects.filter(key__in=limits, window_end__gt=now)
    waits = [(row.window_end - now).total_seconds() for row in full if row.count >= limits[row.key]]
    return math.ceil(max(waits, default=0))


def record_failure(counted: tuple[Counter, ...]) -> None:
    now = timezone.now()
    with transaction.atomic():
        LoginFailures.objects.filter(window_end__lte=now).delete()  # ended windows, anyone's
        for counter in counted:
            if not LoginFailures.objects.filter(key=counter.key).update(count=F("count") + 1):
                window_end = now + timedelta(seconds=settings.LOGIN_FAILURE_WINDOW)
                # get_or_create: another process may open the same window at the same moment.
                LoginFailures.objects.get_or_create(key=counter.key, defaults={"window_end": window_end, "count": 1})


def forget(counter: Counter) -> None:
    """After a successful login: the account's earlier failures were its owner's typos."""
    LoginFailures.objects.filter(key=counter.key).delete()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
