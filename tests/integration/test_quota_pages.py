"""Quotas on the pages: staff set and remove them on their own page; users see theirs on the
new-task form, with what they use, and a start over one is refused on the form, naming it."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from rosetta.catalog.models import Software
from rosetta.computing.models import Resource
from rosetta.tasks.models import Quota, Task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def public_address(settings):
    settings.PUBLIC_URL = "http://localhost:8000"
    settings.TASKS_DOMAIN = "localhost"


@pytest.fixture
def resource():
    return Resource.objects.create(name="local", description="This machine.", max_cpus=8)


@pytest.fixture
def software():
    return Software.objects.create(name="hello", image="localhost/rosetta/hello", visibility="everyone")


def test_staff_set_change_and_remove_quotas_on_their_page(client, resource):
    staff = get_user_model().objects.create_user("root", is_staff=True)
    get_user_model().objects.create_user("ada")
    Group.objects.create(name="astro")
    client.force_login(staff)
    assert client.get(reverse("quotas")).status_code == 200
    assert client.post(reverse("quota-set"), {"holder": "ada", "max_tasks": "2"}).status_code == 302
    assert client.post(reverse("quota-set"), {"holder": "ada", "max_tasks": "3", "memory": "8G"}).status_code == 302
    assert (
        client.post(reverse("quota-set"), {"holder": "group:astro", "resource": "local", "max_cpus": "4"}).status_code
        == 302
    )
    page = client.get(reverse("quotas")).content.decode()
    assert "0 of 3 tasks, 0M of 8G memory" in page and "group astro" in page and "0 of 4 CPUs" in page
    assert Quota.objects.count() == 2  # setting one that exists changes it
    for bad, said in (
        ({"holder": "nobody", "max_tasks": "1"}, "There is no user called"),
        ({"holder": "group:none", "max_tasks": "1"}, "There is no group called"),
        ({"holder": "ada"}, "Give at least one limit"),
        ({"holder": "ada", "memory": "lots"}, "is not a memory size"),
        ({"holder": "ada", "max_tasks": "-1"}, "greater than or equal to 0"),
    ):
        answer = client.post(reverse("quota-set"), bad)
        assert answer.status_code == 400 and said in answer.content.decode(), bad
    quota = Quota.objects.get(group__name="astro")
    assert client.post(reverse("quota-remove", args=[quota.pk])).status_code == 302
    assert not Quota.objects.filter(pk=quota.pk).exists()


def test_the_pages_are_staffs_only(client, resource):
    client.force_login(get_user_model().objects.create_user("ada"))
    assert client.get(reverse("quotas")).status_code in (403, 404)
    assert client.post(reverse("quota-set"), {"holder": "ada", "max_tasks": "99"}).status_code in (403, 404)
    assert not Quota.objects.exists()


def test_users_see_their_quota_on_the_form_and_a_start_over_it_is_refused_there(client, resource, software):
    ada = get_user_model().objects.create_user("ada")
    Quota.objects.create(user=ada, resource=resource, max_tasks=1)
    client.force_login(ada)
    form = client.get(reverse("task-new")).content.decode()
    assert "Your quotas: 0 of 1 tasks (quota of user ada on local)." in form
    fields = {"software": "hello", "resource": "local", "name": "", "cpus": "1", "memory_mb": "512", "environment": ""}
    assert client.post(reverse("task-new"), fields).status_code == 302
    refused = client.post(reverse("task-new"), fields)
    assert refused.status_code == 400
    assert "Over the quota of user ada on local (1 of 1 tasks run already)" in refused.content.decode()
    assert Task.objects.filter(owner=ada).count() == 1
