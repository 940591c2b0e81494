"""How a name finds an entry (rosetta.catalog.services.resolve), as the README says: your own
first, then the platform's, then the one other owner sharing it with you; the newest listed
version unless one is named; hidden ones by exact version only (never by the bare name);
retired ones not at all."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from rosetta.catalog.models import Software
from rosetta.catalog.services import resolve
from rosetta.core.errors import NotFound

pytestmark = pytest.mark.django_db
IMAGE = "localhost/rosetta/hello"


@pytest.fixture
def people():
    make = get_user_model().objects.create_user
    return {name: make(name) for name in ("ann", "ben", "cat", "dan")}


def entry(owner=None, name="tool", version="1", **fields) -> Software:
    return Software.objects.create(owner=owner, name=name, version=version, image=IMAGE, **fields)


def test_own_then_platform_then_shared(people):
    ann, ben, cat = people["ann"], people["ben"], people["cat"]
    shared = entry(ben, visibility="everyone")
    assert resolve(ann, "tool") == shared
    platform = entry(None, visibility="everyone")
    assert resolve(ann, "tool") == platform
    own = entry(ann)
    assert resolve(ann, "tool") == own
    assert resolve(ann, "ben/tool") == shared and resolve(cat, "tool") == platform
    entry(cat, visibility="everyone", name="other")
    entry(people["dan"], visibility="everyone", name="other")
    with pytest.raises(NotFound, match="Several users share software called 'other'.*cat/other, dan/other"):
        resolve(ann, "other")


def test_versions_hidden_and_retired(people):
    ann = people["ann"]
    first = entry(ann, version="1")
    second = entry(ann, version="2")
    assert resolve(ann, "tool") == second and resolve(ann, "tool:1") == first
    assert resolve(ann, "tool", version="1") == first
    second.status = "hidden"
    second.save()
    assert resolve(ann, "tool") == first and resolve(ann, "tool:2") == second
    first.status = "retired"
    first.save()
    with pytest.raises(NotFound, match="Every version of 'tool' you may start is hidden: name one exactly"):
        resolve(ann, "tool")  # only a hidden one left: not by its bare name
    assert resolve(ann, "tool:2") == second and resolve(ann, "tool", managing=True) == second
    with pytest.raises(NotFound, match="tool:1 is retired"):
        resolve(ann, "tool:1")
    with pytest.raises(NotFound, match=r"no version '3' of 'tool' in your catalogue \(there are: 2\)"):
        resolve(ann, "tool:3")
    assert resolve(ann, "tool:1", managing=True) == first  # to change it, it is still found


def test_private_and_group_entries(people):
    ann, ben = people["ann"], people["ben"]
    private = entry(ben)
    with pytest.raises(NotFound, match="There is no software called 'ben/tool' in your catalogue"):
        resolve(ann, "ben/tool")
    team = Group.objects.create(name="team")
    private.visibility, private.group = "group", team
    private.save()
    with pytest.raises(NotFound):
        resolve(ann, "tool")
    ann.groups.add(team)
    assert resolve(ann, "tool") == private
    with pytest.raises(NotFound, match="names no software"):
        resolve(ann, "Bad Name!")
