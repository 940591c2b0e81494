"""Host ids for users' files on this machine.

A user's tasks that mount storages here run in a range of 65,536 host ids of that user's own,
and what the platform creates on local storages for them belongs to it (rosetta.storage.services).
Ranges are slots of one contiguous region kept for them: ``STORAGE_ID_COUNT`` ids from
``STORAGE_ID_BASE``, which scripts/setup.sh reserves in /etc/subuid and /etc/subgid as
``rosetta-storage`` (as it reserves the builds' range), so that no two users' ranges, podman's
automatic ones (the subordinate ids of the user ``containers``), the builds' range, an account's
subordinate ids, or ids past the largest (2^32 - 2) ever overlap. The region holds ``capacity()``
users; ``region_problems`` says what is wrong with one, and the platform refuses to start with it.

Slots are given per user, in a table (``IdRange``), when first needed, instead of being derived
from the user's id: ids only grow as users come and go, so the capacity would be about every
account ever made, and a user made after the first 17,509 would get none. Here it is about the
users who use storages on this machine. A deleted user's slot stays taken until every never-used
slot is given out; only then is it given again (what that user's tasks left on a storage others
share then belongs to its new holder's tasks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from rosetta.computing.engines.podman import USER_NAMESPACE_SIZE
from rosetta.storage.errors import NoIdRange
from rosetta.storage.models import IdRange

RANGE = USER_NAMESPACE_SIZE  # host ids per user: a task's whole user namespace
RESERVATION = "rosetta-storage"  # the region's name in /etc/subuid and /etc/subgid
SUBORDINATE_IDS = ("/etc/subuid", "/etc/subgid")
LAST_ID = 2**32 - 2  # (uid_t) -1 is "no id"
OWN_ACCOUNTS = 65536  # ids below are this machine's own accounts'
ATTEMPTS = 50  # a slot another process took at the same moment: try the next


@dataclass(frozen=True)
class Subordinate:
    """One line of /etc/subuid or /etc/subgid: ``name`` owns ``count`` ids from ``start``."""

    file: str
    name: str
    start: int
    count: int


def capacity(count: int | None = None) -> int:
    """How many users' ranges the region holds."""
    return (settings.STORAGE_ID_COUNT if count is None else count) // RANGE


def first_id(slot: int) -> int:
    return settings.STORAGE_ID_BASE + slot * RANGE


def slot_of(user_id: int) -> int:
    """The user's slot, given now if they have none yet; ``NoIdRange`` when none is left."""
    for _ in range(ATTEMPTS):
        held = IdRange.objects.filter(user_id=user_id).values_list("slot", flat=True).first()
        if held is not None:
            if held >= capacity():
                raise NoIdRange(
                    "Your range of host ids lies outside the region this machine now keeps for users' files "
                    "(ROSETTA_STORAGE_ID_COUNT was made smaller): ask an operator."
                )
            return held
        try:
            with transaction.atomic():
                return _give_slot(user_id)
        except IntegrityError:
            continue  # another process gave that slot, or this user one, at the same moment
    raise NoIdRange("Too many users were given host ids at once: try again.")


def _give_slot(user_id: int) -> int:
    """A never-used slot, else one a deleted user left."""
    problems = region_problems(read_subordinate_ids())
    if problems:
        raise NoIdRange(f"No host ids can be given for users' files on this machine: {' '.join(problems)}")
    top = IdRange.objects.aggregate(top=Max("slot"))["top"]
    fresh = 0 if top is None else top + 1
    if fresh < capacity():
        IdRange.objects.create(slot=fresh, user_id=user_id)
        return fresh
    freed = IdRange.objects.filter(user=None, slot__lt=capacity()).order_by("slot").values_list("slot", flat=True)
    for slot in freed[:1]:
        if IdRange.objects.filter(slot=slot, user=None).update(user_id=user_id) != 1:
            raise IntegrityError("taken meanwhile")
        return slot
    raise NoIdRange(
        f"Every range of host ids this machine keeps for users' files is taken ({capacity():,} users): ask an operator."
    )


def read_subordinate_ids(paths: tuple[str, ...] = SUBORDINATE_IDS) -> list[Subordinate]:
    """The lines of /etc/subuid and /etc/subgid (missing files: none)."""
    found = []
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            name, _, rest = line.strip().partition(":")
            start, _, count = rest.partition(":")
            if name and not name.startswith("#") and start.isdigit() and count.isdigit():
                found.append(Subordinate(path, name, int(start), int(count)))
    return found


def region_problems(subordinates: list[Subordinate], base: int | None = None, count: int | None = None) -> list[str]:
    """What is wrong with the region (default: the configured one): each problem in a sentence."""
    base = settings.STORAGE_ID_BASE if base is None else base
    count = settings.STORAGE_ID_COUNT if count is None else count
    end = base + count  # exclusive
    said = f"The region for users' files (ROSETTA_STORAGE_ID_BASE={base}, ROSETTA_STORAGE_ID_COUNT={count})"
    problems = []
    if capacity(count) < 1:
        problems.append(f"{said} holds no range of {RANGE:,} ids.")
    if base < OWN_ACCOUNTS:
        problems.append(f"{said} starts among the ids of this machine's own accounts (below {OWN_ACCOUNTS:,}).")
    if end - 1 > LAST_ID:
        problems.append(f"{said} ends past the largest id, {LAST_ID:,}.")
    builds = settings.BUILD_ID_BASE
    if _overlap(base, end, builds, builds + RANGE):
        problems.append(f"{said} overlaps the builds' ids (ROSETTA_BUILD_ID_BASE={builds}).")
    for other in subordinates:
        if other.name != RESERVATION and _overlap(base, end, other.start, other.start + other.count):
            whose = "podman's automatic ranges, " if other.name == "containers" else ""
            problems.append(
                f"{said} overlaps {whose}the ids {other.file} gives {other.name!r} "
                f"({other.start}-{other.start + other.count - 1})."
            )
    return problems


def reserved(subordinates: list[Subordinate]) -> bool:
    """Whether /etc/subuid and /etc/subgid both keep the whole region for us (else an account
    made later could be given some of its ids)."""
    base, end = settings.STORAGE_ID_BASE, settings.STORAGE_ID_BASE + settings.STORAGE_ID_COUNT
    return all(
        any(
            s.file == path and s.name == RESERVATION and s.start <= base and end <= s.start + s.count
            for s in subordinates
        )
        for path in SUBORDINATE_IDS
    )


def _overlap(start: int, end: int, other_start: int, other_end: int) -> bool:
    return start < other_end and other_start < end
