"""Usage accounting: CPU-hours and memory-hours by user, group and resource, clipped to the
period asked, on the staff page (and as CSV) and with `rosetta usage`."""

from datetime import timedelta

import pytest
from click.testing import CliRunner
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from rosetta.catalog.models import Software
from rosetta.cli.usage import usage_command
from rosetta.computing.models import Resource
from rosetta.tasks.models import Task
from rosetta.tasks.usage import usage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def history():
    """ada: 2 CPUs × 3 h ended yesterday, and 1 CPU with 2 GiB running for 10 h; bo: 4 CPUs × 1 h,
    40 days ago (outside 30 days); a task that never answered (no hours)."""
    now = timezone.now()
    local = Resource.objects.create(name="local")
    cluster = Resource.objects.create(name="cluster")
    software = Software.objects.create(name="hello", image="localhost/rosetta/hello", visibility="everyone")
    ada, bo = (get_user_model().objects.create_user(name) for name in ("ada", "bo"))
    astro = Group.objects.create(name="astro")
    ada.groups.add(astro)
    bo.groups.add(astro)

    def task(owner, resource, cpus, memory_mb, started, finished, phase):
        fields = {"cpus": cpus, "memory_mb": memory_mb, "started": started, "finished": finished, "phase": phase}
        name = f"t{Task.objects.count()}"
        return Task.objects.create(owner=owner, name=name, software=software, resource=resource, **fields)

    task(ada, local, 2, 1024, now - timedelta(hours=27), now - timedelta(hours=24), "exited")
    task(ada, cluster, 1, 2048, now - timedelta(hours=10), None, "running")
    task(bo, local, 4, 512, now - timedelta(days=40, hours=1), now - timedelta(days=40), "stopped")
    task(bo, local, 8, 512, None, now - timedelta(hours=1), "failed")
    return now


def test_hours_are_counted_from_sizes_and_clipped_to_the_period(history):
    by_user = usage(history - timedelta(days=30), "user", until=history)
    assert list(by_user) == ["ada"]  # bo's work was 40 days ago; a task that never answered used nothing
    assert by_user["ada"].tasks == 2
    assert by_user["ada"].cpu_hours == pytest.approx(2 * 3 + 1 * 10)
    assert by_user["ada"].memory_gib_hours == pytest.approx(1 * 3 + 2 * 10)
    clipped = usage(history - timedelta(hours=5), "resource", until=history)
    assert clipped["cluster"].cpu_hours == pytest.approx(5) and "local" not in clipped
    by_group = usage(history - timedelta(days=60), "group", until=history)
    assert by_group["astro"].cpu_hours == pytest.approx(16 + 4)  # both members' work


def test_staff_read_it_on_their_page_and_as_csv(client, history):
    client.force_login(get_user_model().objects.create_user("root", is_staff=True))
    page = client.get(reverse("usage"), {"by": "resource", "days": "30"}).content.decode()
    assert 'data-usage="cluster"' in page and 'data-usage="local"' in page
    csv = client.get(reverse("usage"), {"by": "user", "days": "90", "format": "csv"})
    assert csv["Content-Type"].startswith("text/csv")
    lines = csv.content.decode().splitlines()
    assert lines[0] == "user,tasks,hours,cpu_hours,memory_gib_hours"
    assert lines[1].startswith("ada,2,13.00,16.00,") and lines[2].startswith("bo,1,1.00,4.00,")
    client.force_login(get_user_model().objects.get(username="ada"))
    assert client.get(reverse("usage")).status_code in (403, 404)


def test_rosetta_usage_on_the_command_line(history):
    said = CliRunner().invoke(usage_command, ["--since", "30d", "--by", "user"])
    assert said.exit_code == 0, said.output
    assert "ada" in said.output and "16.00" in said.output and "bo" not in said.output
    as_csv = CliRunner().invoke(usage_command, ["--since", "2w", "--by", "resource", "--csv"])
    assert as_csv.output.splitlines()[0] == "resource,tasks,hours,cpu_hours,memory_gib_hours"
    refused = CliRunner().invoke(usage_command, ["--since", "lots"])
    assert refused.exit_code == 2 and "is not a number of days" in refused.output
