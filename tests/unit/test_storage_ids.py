"""Users' ranges of host ids: slots of one region that overlaps nothing else, given per user."""

import importlib
import os

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model

from rosetta.computing.errors import Refused
from rosetta.storage import ids
from rosetta.storage.errors import NoIdRange
from rosetta.storage.models import IdRange
from rosetta.storage.services import task_id_base

AUTOMATIC = ids.Subordinate("/etc/subuid", "containers", 2147483647, 2147483648)  # as scripts/setup.sh adds it
BUILDS = ids.Subordinate("/etc/subuid", "rosetta-builds", 400000000, 65536)
ACCOUNT = ids.Subordinate("/etc/subuid", "alice", 165536, 65536)


def test_the_default_region_fits_below_podmans_automatic_ranges_and_overlaps_nothing():
    assert ids.capacity() == 17509
    assert ids.first_id(0) == 1_000_000_000
    assert ids.first_id(ids.capacity() - 1) + ids.RANGE <= AUTOMATIC.start  # the last range ends before them
    assert ids.region_problems([AUTOMATIC, BUILDS, ACCOUNT]) == []


@pytest.mark.parametrize(
    ("base", "count", "said"),
    [
        (1_000_000_000, 1_200_000_000, "overlaps podman's automatic ranges, the ids /etc/subuid gives 'containers'"),
        (399_990_000, 10 * 65536, "overlaps the builds' ids (ROSETTA_BUILD_ID_BASE=400000000)"),
        (100_000, 65536 * 2, "overlaps the ids /etc/subuid gives 'alice' (165536-231071)"),
        (4_294_000_000, 65536 * 20, "ends past the largest id, 4,294,967,294."),
        (1000, 65536, "starts among the ids of this machine's own accounts"),
        (1_000_000_000, 65535, "holds no range of 65,536 ids."),
    ],
)
def test_a_region_that_overlaps_anything_else_says_what(base, count, said):
    problems = ids.region_problems([AUTOMATIC, BUILDS, ACCOUNT], base, count)
    assert any(said in problem for problem in problems), problems
    assert all(f"ROSETTA_STORAGE_ID_BASE={base}, ROSETTA_STORAGE_ID_COUNT={count}" in problem for problem in problems)


def test_our_own_reservation_is_no_overlap_and_counts_as_reserved(tmp_path, settings):
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:165536:65536\n# a comment\nrosetta-storage:1000000000:1147469824\n")
    found = ids.read_subordinate_ids((str(subuid),))
    assert [(s.name, s.start, s.count) for s in found] == [
        ("alice", 165536, 65536),
        (ids.RESERVATION, 10**9, 1147469824),
    ]
    assert ids.region_problems(found) == []
    both = [ids.Subordinate(path, ids.RESERVATION, 10**9, 1147469824) for path in ids.SUBORDINATE_IDS]
    assert ids.reserved(both) and not ids.reserved(both[:1])
    settings.STORAGE_ID_COUNT += 65536  # now larger than what is reserved
    assert not ids.reserved(both)


@pytest.mark.django_db
def test_slots_are_given_once_per_user_never_shared_and_refused_clearly_when_none_is_left(settings):
    settings.STORAGE_ID_COUNT = 3 * ids.RANGE
    users = [get_user_model().objects.create_user(f"ids-{n}") for n in range(4)]
    slots = [ids.slot_of(user.pk) for user in users[:3]]
    assert slots == [0, 1, 2] and [ids.slot_of(user.pk) for user in users[:3]] == slots  # kept, not given again
    with pytest.raises(NoIdRange, match=r"taken \(3 users\): ask an operator") as refused:
        ids.slot_of(users[3].pk)
    assert refused.value.status == 503

    users[1].delete()  # its slot is free again, and only now, with no never-used one left, is given again
    assert ids.slot_of(users[3].pk) == 1
    assert sorted(IdRange.objects.values_list("user_id", flat=True)) == sorted([users[0].pk, users[2].pk, users[3].pk])


@pytest.mark.django_db
def test_never_used_slots_go_before_those_deleted_users_left(settings):
    settings.STORAGE_ID_COUNT = 10 * ids.RANGE
    first, second, third = (get_user_model().objects.create_user(f"fresh-{n}") for n in range(3))
    assert (ids.slot_of(first.pk), ids.slot_of(second.pk)) == (0, 1)
    first.delete()
    assert ids.slot_of(third.pk) == 2


@pytest.mark.django_db
def test_a_slot_outside_a_region_made_smaller_is_refused_not_moved(settings):
    user = get_user_model().objects.create_user("outside")
    IdRange.objects.create(slot=9, user=user)
    settings.STORAGE_ID_COUNT = 5 * ids.RANGE
    with pytest.raises(NoIdRange, match="outside the region"):
        ids.slot_of(user.pk)


@pytest.mark.django_db
def test_existing_users_keep_the_range_they_had_where_it_is_still_in_the_region(settings):
    """Before, user N had the ids from ROSETTA_STORAGE_ID_BASE + N × 65,536 (slot N), wherever that led."""
    settings.STORAGE_ID_COUNT = 4 * ids.RANGE
    for pk in (1, 2, 3, 7):
        get_user_model().objects.create_user(f"old-{pk}", id=pk)
    get_user_model().objects.filter(pk=2).delete()  # deleted before the upgrade
    migration = importlib.import_module("rosetta.storage.migrations.0002_id_ranges")
    migration.keep_the_ranges_users_had(apps, None)
    assert dict(IdRange.objects.values_list("slot", "user_id")) == {0: None, 1: 1, 2: None, 3: 3}
    assert ids.slot_of(1) == 1 and ids.slot_of(3) == 3
    assert ids.slot_of(7) == 0  # its old range lay outside the region: a free slot, the first


@pytest.mark.django_db
def test_a_task_whose_owner_has_no_range_fails_with_the_reason(settings, monkeypatch):
    """The controller's view (a task requested before the region filled up): a refusal, which
    the task's events show, not an error."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    settings.STORAGE_ID_COUNT = ids.RANGE
    holder, late = (get_user_model().objects.create_user(f"task-{n}") for n in range(2))
    assert task_id_base(holder.pk) == settings.STORAGE_ID_BASE
    with pytest.raises(Refused, match="taken"):
        task_id_base(late.pk)
