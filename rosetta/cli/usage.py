"""`rosetta usage`: operators' accounting — CPU-hours and memory-hours per user, group or
resource over a period (the same as the staff page's Usage)."""

from __future__ import annotations

import csv
import sys
from datetime import timedelta

import click

from rosetta.cli.tokens import days_option
from rosetta.core.django_setup import setup_django


@click.command("usage")
@click.option("--since", default="30d", show_default=True, callback=days_option, help="The period: 30d, 2w, 7.")
@click.option("--by", type=click.Choice(["user", "group", "resource"]), default="user", show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="Comma-separated values (with a header) for a spreadsheet.")
def usage_command(since: int, by: str, as_csv: bool):
    """CPU-hours and memory-hours used, from tasks' sizes and how long they held them."""
    setup_django()
    from django.utils import timezone

    from rosetta.cli.tasks import table
    from rosetta.tasks.usage import usage

    used = usage(timezone.now() - timedelta(days=since), by)
    rows = [[key, str(use.tasks), f"{use.hours:.2f}", f"{use.cpu_hours:.2f}", f"{use.memory_gib_hours:.2f}"]
            for key, use in used.items()]  # fmt: skip
    header = [by.upper(), "TASKS", "HOURS", "CPU-HOURS", "MEMORY GIB-HOURS"]
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow([by, "tasks", "hours", "cpu_hours", "memory_gib_hours"])
        return writer.writerows(rows)
    if not rows:
        return click.echo(f"No task ran in the last {since} days.")
    table(rows, header)
