"""What a process checks before it serves: settings that would make it unsafe stop it with a clear message."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import click

log = logging.getLogger("rosetta")


@dataclass(frozen=True)
class NotHere:
    """Why `rosetta run` starts a process not: a setting turned it off (nothing to say), or
    something it needs is missing (``said``: the operator is told)."""

    reason: str
    said: bool = False


def check_public_setup() -> None:
    """Refuse to serve task origins that are same-site with the platform (rosetta.core.sites)."""
    from urllib.parse import urlsplit

    from django.conf import settings

    from rosetta.core.sites import SAME_SITE_FIX, same_site_problem

    problem = same_site_problem(urlsplit(settings.PUBLIC_URL).hostname or "", settings.TASKS_DOMAIN)
    if problem and not settings.ALLOW_SAME_SITE_TASKS:
        raise click.ClickException(f"{problem} {SAME_SITE_FIX}")
    if problem:
        log.warning("%s Accepted because ROSETTA_ALLOW_SAME_SITE_TASKS=1.", problem)


def check_id_region() -> None:
    """Refuse a region of host ids for users' files that overlaps other ids (rosetta.storage.ids);
    as another account than root the platform uses none."""
    if os.geteuid() != 0:
        return
    from django.conf import settings

    from rosetta.storage import ids

    subordinates = ids.read_subordinate_ids()
    problems = ids.region_problems(subordinates)
    if problems:
        raise click.ClickException(" ".join(problems))
    if not ids.reserved(subordinates):
        log.warning(
            "Host ids %d-%d (users' files) are not reserved as %r in /etc/subuid and /etc/subgid: an account "
            "made later could be given some of them (scripts/setup.sh reserves them).",
            settings.STORAGE_ID_BASE, settings.STORAGE_ID_BASE + settings.STORAGE_ID_COUNT - 1, ids.RESERVATION,
        )  # fmt: skip
