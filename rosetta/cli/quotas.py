"""`rosetta quotas set | list | remove`: operators say how much of a resource a user, or a
group's members together, may use at once (the same as the staff page's Quotas)."""

from __future__ import annotations

import json

import click

from rosetta.cli.users import user_named
from rosetta.core.django_setup import setup_django


@click.group("quotas")
def quotas_group():
    """Operators: how many tasks, CPUs and memory users and groups may use at once."""


def _holder(user: str | None, group: str | None) -> dict:
    if (user is None) == (group is None):
        raise click.UsageError("Give --user NAME or --group NAME.")
    from django.contrib.auth.models import Group

    if user is not None:
        return {"user": user_named(user)}
    found = Group.objects.filter(name=group).first()
    if found is None:
        raise click.ClickException(f"There is no group called {group!r} (see `rosetta groups list`).")
    return {"group": found}


def _resource(name: str | None):
    if name is None:
        return None
    from rosetta.computing.models import Resource

    found = Resource.objects.filter(name=name).first()
    if found is None:
        raise click.ClickException(f"There is no resource called {name!r} (see `rosetta resources list`).")
    return found


def _memory(ctx, param, value: str | None) -> int | None:
    from rosetta.core.units import parse_memory_mb

    if value is None:
        return None
    try:
        return parse_memory_mb(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


who = [
    click.option("--user", default=None, help="The user it is for."),
    click.option("--group", default=None, help="The group it is for: its members' tasks together."),
    click.option("--resource", default=None, help="The resource it counts on (default: all together)."),
]


def _with(options):
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@quotas_group.command("set")
@_with(who)
@click.option("--tasks", type=click.IntRange(min=0), default=None, help="Active tasks at once.")
@click.option("--cpus", type=click.FloatRange(min=0), default=None, help="CPUs of active tasks together.")
@click.option("--memory", callback=_memory, default=None, help="Memory of active tasks together (8G, 512M).")
def set_quota(user, group, resource, tasks, cpus, memory):
    """Make or change a quota (limits not given are not limited)."""
    setup_django()
    from rosetta.tasks import quotas

    if tasks is None and cpus is None and memory is None:
        raise click.UsageError("Give at least one of --tasks, --cpus, --memory (or `rosetta quotas remove`).")
    quota = quotas.set_quota(**_holder(user, group), resource=_resource(resource), tasks=tasks, cpus=cpus,
                             memory_mb=memory)  # fmt: skip
    click.echo(f"The {quota}: {quotas.said(quota, quotas.usage_of(quota))}.")


@quotas_group.command("remove")
@_with(who)
def remove_quota(user, group, resource):
    """Remove a quota."""
    setup_django()
    from rosetta.tasks.models import Quota

    holder = _holder(user, group)
    removed, _ = Quota.objects.filter(**holder, resource=_resource(resource)).delete()
    if not removed:
        raise click.ClickException("There is no such quota (see `rosetta quotas list`).")
    click.echo("Removed.")


@quotas_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def list_quotas(as_json):
    """List every quota with what its holder uses now."""
    setup_django()
    from rosetta.cli.tasks import table
    from rosetta.tasks import quotas
    from rosetta.tasks.models import Quota

    rows = []
    for quota in Quota.objects.select_related("user", "group", "resource").order_by("pk"):
        used = quotas.usage_of(quota)
        rows.append({
            "user": quota.user.get_username() if quota.user_id else None,
            "group": quota.group.name if quota.group_id else None,
            "resource": quota.resource.name if quota.resource_id else None,
            "max_tasks": quota.max_tasks, "max_cpus": quota.max_cpus, "max_memory_mb": quota.max_memory_mb,
            "tasks": used.tasks, "cpus": used.cpus, "memory_mb": used.memory_mb,
            "said": quotas.said(quota, used),
        })  # fmt: skip
    if as_json:
        return click.echo(json.dumps(rows, indent=2))
    if not rows:
        return click.echo("No quotas: users may start tasks within each resource's own limits.")
    holders = [f"user {r['user']}" if r["user"] else f"group {r['group']}" for r in rows]
    table([[holder, r["resource"] or "all", r["said"]] for holder, r in zip(holders, rows, strict=True)],
          ["FOR", "ON", "IN USE"])  # fmt: skip
