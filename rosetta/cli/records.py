"""`rosetta records list | purge`: operators and the records of deleted tasks, which are kept
(hidden from users' lists) until purged."""

from __future__ import annotations

from datetime import timedelta

import click

from rosetta.cli.tokens import days_option
from rosetta.core.django_setup import setup_django


@click.group("records")
def records_group():
    """Operators: the kept records of deleted tasks (what they ran)."""


@records_group.command("list")
@click.option("--user", default=None, help="Only this user's.")
def list_records(user):
    """Kept records, newest first."""
    setup_django()
    from rosetta.cli.tasks import table
    from rosetta.tasks.models import TaskRecord

    records = TaskRecord.objects.select_related("owner").order_by("-created")
    if user:
        records = records.filter(owner__username=user)
    rows = [[r.id, r.owner.get_username(), r.name, f"{r.created:%Y-%m-%d %H:%M}", f"{r.kept:%Y-%m-%d %H:%M}"]
            for r in records[:1000]]  # fmt: skip
    if not rows:
        return click.echo("No kept records.")
    table(rows, ["TASK", "OWNER", "NAME", "REQUESTED (UTC)", "DELETED (UTC)"])


@records_group.command("purge")
@click.option("--older-than", "older_than", callback=days_option, default=None,
              help="Only records of tasks deleted more than this long ago (90d, 4w).")  # fmt: skip
@click.option("--user", default=None, help="Only this user's.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
def purge(older_than, user, yes):
    """Destroy kept records for good."""
    setup_django()
    from django.utils import timezone

    from rosetta.tasks.models import TaskRecord

    records = TaskRecord.objects.all()
    if older_than:
        records = records.filter(kept__lt=timezone.now() - timedelta(days=older_than))
    if user:
        records = records.filter(owner__username=user)
    count = records.count()
    if count and not yes:
        click.confirm(f"Destroy {count} record{'s' if count != 1 else ''} for good?", abort=True)
    deleted = records.delete()[0]
    click.echo(f"Purged {deleted} record{'s' if deleted != 1 else ''}.")
