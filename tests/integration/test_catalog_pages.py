"""The catalogue's pages as users and operators use them (Django's test client, real database):
search and filters, private entries kept private, owners' and staff's changes, adding software."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from rosetta.catalog.models import BuildState, Software, SoftwareBuild
from rosetta.computing.models import Resource
from rosetta.tasks.models import Task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_address(settings):
    settings.PUBLIC_URL = "http://localhost:8000"
    settings.TASKS_DOMAIN = "localhost"


@pytest.fixture
def users():
    make = get_user_model().objects.create_user
    return make("alice"), make("bob"), make("ops", is_staff=True)


@pytest.fixture
def catalogue(users):
    alice, _, _ = users
    Resource.objects.create(name="local")
    common = dict(image="localhost/rosetta/hello", interface_port=8080)
    return {
        "hello": Software.objects.create(name="hello", visibility="everyone", description="Says hello.", **common),
        "shell": Software.objects.create(name="shell", visibility="everyone", interface_protocol="ssh", **common),
        "secret": Software.objects.create(owner=alice, name="secret-tool", description="Alice's own.", **common),
    }


def names_on(page) -> set[str]:
    return set(re.findall(rb'data-software="([^"]+)"', page.content))


def test_private_entries_stay_private_in_the_pages(client, users, catalogue):
    alice, bob, _ = users
    secret = catalogue["secret"]
    client.force_login(bob)
    assert names_on(client.get(reverse("catalog"))) == {b"hello", b"shell"}
    assert client.get(reverse("software", args=[secret.pk])).status_code == 404
    form = client.get(reverse("task-new"))
    assert b"secret-tool" not in form.content
    refused = client.post(
        reverse("task-new"),
        {"software": "alice/secret-tool:1", "resource": "local", "cpus": "1", "memory_mb": "512"},
    )
    assert refused.status_code == 400 and b"no software called" in refused.content and not Task.objects.exists()
    # Bob may have a tool of the same name: names are per owner.
    Software.objects.create(owner=bob, name="secret-tool", image="localhost/rosetta/hello")
    assert b"secret-tool" in names_on(client.get(reverse("catalog")))

    client.force_login(alice)
    page = client.get(reverse("catalog"))
    assert names_on(page) == {b"hello", b"shell", b"secret-tool"} and b"yours" in page.content


def test_search_and_filters(client, users, catalogue):
    client.force_login(users[0])
    assert names_on(client.get(reverse("catalog"), {"q": "says HELLO"})) == {b"hello"}
    assert names_on(client.get(reverse("catalog"), {"interface": "ssh"})) == {b"shell"}
    assert names_on(client.get(reverse("catalog"), {"mine": "1"})) == {b"secret-tool"}
    assert names_on(client.get(reverse("catalog"), {"resource": "local"})) == {b"hello", b"shell", b"secret-tool"}
    assert b"Nothing in the catalogue matches" in client.get(reverse("catalog"), {"q": "nothing-like-it"}).content


def test_versions_are_listed_and_each_can_be_started(client, users, catalogue):
    client.force_login(users[1])
    newer = Software.objects.create(
        name="hello",
        version="2",
        visibility="everyone",
        image="localhost/rosetta/hello",
        image_digest="sha256:" + "a" * 64,
    )
    page = client.get(reverse("catalog")).content.decode()
    card = page[page.index('data-software="hello"') :]
    assert 'data-version="2"' in card and 'data-version="1"' in card
    assert card.index('data-version="2"') < card.index('data-version="1"')  # newest first
    assert "aaaaaaaaaaaa" in card  # the digest
    form = client.get(reverse("task-new"), {"software": newer.pk}).content.decode()
    assert re.search(rf'<option value="{newer.pk}"[^>]*selected[^>]*>hello 2</option>', form)


def test_operators_hide_and_retire_entries_which_stay_on_tasks(client, users, catalogue):
    alice, _, ops = users
    secret = catalogue["secret"]
    task = Task.objects.create(owner=alice, name="used-it", software=secret, resource=Resource.objects.get())

    client.force_login(ops)
    assert b"secret-tool" not in names_on(client.get(reverse("catalog")))  # an operator's catalogue is a user's...
    assert b"secret-tool" in names_on(client.get(reverse("catalog"), {"all": "1"}))  # ...until they manage it
    response = client.post(reverse("software-status", args=[secret.pk]), {"status": "retired"})
    assert response.status_code == 302
    secret.refresh_from_db()
    assert secret.status == "retired"

    client.force_login(alice)
    assert b"secret-tool" not in names_on(client.get(reverse("catalog")))
    assert b"status-retired" in client.get(reverse("catalog"), {"retired": "1"}).content
    assert b"secret-tool" not in client.get(reverse("task-new")).content
    detail = client.get(reverse("task", args=[task.id])).content
    assert b"secret-tool 1" in detail and b"status-retired" in detail

    # Owners may change their own entries; others may not even see the form.
    client.post(reverse("software-status", args=[secret.pk]), {"status": "listed"})
    edited = client.post(
        reverse("software", args=[secret.pk]),
        {"description": "Now documented.", "interface_protocol": "http", "interface_port": "8080",
         "visibility": "private", "environment": "MODE=fast"},
    )  # fmt: skip
    assert edited.status_code == 302
    secret.refresh_from_db()
    assert (secret.status, secret.description, secret.environment) == ("listed", "Now documented.", {"MODE": "fast"})
    client.force_login(users[1])
    assert (
        client.post(reverse("software-status", args=[catalogue["hello"].pk]), {"status": "hidden"}).status_code == 404
    )


def test_sharing_with_a_group(client, users, catalogue):
    alice, bob, _ = users
    team = Group.objects.create(name="team")
    client.force_login(alice)
    form = {"kind": "image", "image-name": "shared", "image-version": "1", "image-image": "localhost/rosetta/hello",
            "image-interface_protocol": "http", "image-interface_port": "8080", "image-visibility": "group",
            "image-group": "team"}  # fmt: skip
    refused = client.post(reverse("software-new"), form)
    assert refused.status_code == 400 and b"team" in refused.content  # not a member (not even offered)
    alice.groups.add(team)
    added = client.post(reverse("software-new"), form)
    assert added.status_code == 302 and Software.objects.get(name="shared").group == team
    client.force_login(bob)
    assert b"shared" not in names_on(client.get(reverse("catalog")))
    bob.groups.add(team)
    assert b"shared" in names_on(client.get(reverse("catalog")))


def test_adding_software_from_the_page(client, users, catalogue):
    client.force_login(users[1])
    page = client.get(reverse("software-new"))
    assert b"Build from a Containerfile" in page.content and b"Register an image" in page.content
    assert b'value="everyone"' not in page.content  # only staff share with everyone

    build = {"kind": "build", "build-name": "mine", "build-version": "1", "build-interface_protocol": "http",
             "build-interface_port": "8080", "build-visibility": "private"}  # fmt: skip
    refused = client.post(
        reverse("software-new"), {**build, "build-containerfile": "FROM localhost/rosetta/hello\nADD http://x/ /\n"}
    )
    assert refused.status_code == 400 and b"Line 2: ADD from a URL is not allowed" in refused.content
    short_name = client.post(reverse("software-new"), {**build, "build-containerfile": "FROM debian:12\n"})
    assert b"names no registry" in short_name.content
    assert not SoftwareBuild.objects.exists()

    queued = client.post(reverse("software-new"), {**build, "build-containerfile": "FROM localhost/rosetta/hello\n"})
    started = SoftwareBuild.objects.get()
    assert queued["Location"] == reverse("software-build", args=[started.pk])
    assert started.state == BuildState.QUEUED and not Software.objects.filter(name="mine").exists()
    page = client.get(queued["Location"])
    assert b"data-build-log" in page.content and b"queued" in page.content
    assert queued["Location"].encode() in client.get(reverse("software-new")).content  # among recent builds
    client.force_login(users[0])
    assert client.get(queued["Location"]).status_code == 404  # another user's build
