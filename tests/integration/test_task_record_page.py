"""The task page says what ran: image, digest, environment with secret values left out."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from rosetta.catalog.models import Software
from rosetta.computing.models import Resource
from rosetta.tasks.models import Task

pytestmark = pytest.mark.django_db


def test_the_task_page_says_what_ran(client):
    ada = get_user_model().objects.create_user("ada")
    software = Software.objects.create(name="hello", image="localhost/rosetta/hello", visibility="everyone",
                                       environment={"MODE": "fast"})  # fmt: skip
    local = Resource.objects.create(name="local")
    digest = "sha256:" + "a" * 64
    task = Task.objects.create(owner=ada, name="seen", software=software, resource=local, software_digest=digest,
                               environment={"SECRET_KEY": "hidden-value"})  # fmt: skip
    client.force_login(ada)
    page = client.get(reverse("task", args=[task.id])).content.decode()
    assert 'id="what-ran"' in page and "sha256:" + "a" * 64 in page
    assert "MODE=fast" in page and "SECRET_KEY=(secret: not recorded)" in page and "hidden-value" not in page
    assert f"/api/tasks/{task.id}/record" in page
