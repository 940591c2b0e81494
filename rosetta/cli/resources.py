"""`rosetta resources ...`: operator commands for computing resources (run on the platform's host)."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from pathlib import Path

import click

from rosetta.cli.client import has_client_login
from rosetta.core.django_setup import setup_django

SSH_TARGET = re.compile(r"^(?P<user>[^@\s]+)@(?P<host>[^:\s]+)(?::(?P<port>\d+))?$")


@click.group("resources")
def resources_group():
    """Where tasks run: list them; operators add, check and retire them."""


def _resource(name: str):
    from rosetta.computing.models import Resource

    found = Resource.objects.filter(name=name).first()
    if found is None:
        names = ", ".join(Resource.objects.values_list("name", flat=True)) or "none yet"
        raise click.ClickException(f"There is no resource called {name!r} (there are: {names}).")
    return found


def _save(resource, **fields) -> None:
    from django.core.exceptions import ValidationError

    from rosetta.computing.services import save_resource
    from rosetta.core.errors import Conflict

    try:
        save_resource(resource, **fields)
    except (ValidationError, Conflict) as error:
        raise click.ClickException(" ".join(getattr(error, "messages", [str(error)]))) from None


class WithKindOptions(click.Command):
    """A command that takes, besides its own, an option per option of every installed kind (from
    the kind's schema: --NAME VALUE, typed). The registry is read only when this command runs or
    shows its help: other commands start without loading every kind."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return [*super().get_params(ctx), *_kind_options(frozenset(self._own_flags()))]

    def _own_flags(self) -> set[str]:
        return {flag for param in self.params for flag in getattr(param, "opts", [])}


@functools.cache
def _kind_options(taken: frozenset[str]) -> list[click.Option]:
    from rosetta.computing import kinds

    takers: dict[str, list] = {}  # option name -> [(kind, field)]
    for role in kinds.ROLES:
        for kind in kinds.of(role):
            for name, info in kind.options.model_fields.items():
                takers.setdefault(name, []).append((kind, info))
    options = []
    for name, found in takers.items():
        kind, info = found[0]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        flag = "--" + str(extra.get("flag") or name.replace("_", "-"))
        if flag in taken:
            continue  # the command's own: this option stays reachable with --option NAME=VALUE
        whose = ", ".join(kind.label for kind, _ in found)
        kind_type = {int: click.INT, float: click.FLOAT, bool: click.BOOL}.get(info.annotation, click.STRING)
        said = (info.description or name.replace("_", " ")).rstrip(".")
        options.append(click.Option([flag, name], type=kind_type, help=f"{said} ({whose})."))
    return options


@resources_group.command("add", cls=WithKindOptions)
@click.argument("name")
@click.option("--ssh", "target", metavar="USER@HOST[:PORT]", help="Reached over SSH (the login node for Slurm).")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), help="The service account's private key.")
@click.option("--per-user", is_flag=True, help="Each user runs as their own account there (with their own key).")
@click.option("--scheduler", default="none", show_default=True, help="A scheduler kind: none, slurm or a plug-in's.")
@click.option(
    "--engine",
    default="podman",
    show_default=True,
    help="An engine kind: podman, docker, apptainer (inside batch jobs only) or a plug-in's.",
)
@click.option("--max-cpus", type=float, default=2.0, show_default=True)
@click.option("--max-memory", "max_memory_mb", type=int, default=4096, show_default=True, help="MiB.")
@click.option(
    "--option", "options", multiple=True, metavar="NAME=VALUE", help="Any option of the resource's kinds (repeatable)."
)
@click.option("--work-dir", default=".rosetta", show_default=True, help="The platform's directory there.")
@click.option("--description", default="")
@click.option(
    "--node", default="", help="A local resource's machine (its ROSETTA_NODE) if not this one: only it runs the tasks."
)
def add(name, target, key_file, per_user, scheduler, engine, max_cpus, max_memory_mb, options, work_dir, description,
        node, **kind_options):  # fmt: skip
    """Add a resource; then `rosetta resources check NAME --pin` before users see it. The options of
    the resource's kinds (Slurm: --partition, --time-limit, --account, --qos, --gres) are listed below."""
    setup_django()
    from rosetta.computing.models import Resource

    fields = dict(description=description, scheduler=scheduler, engine=engine, max_cpus=max_cpus,
                  max_memory_mb=max_memory_mb, work_dir=work_dir, node=node)  # fmt: skip
    # Options of the resource's kinds (save_resource gives each to the kind whose schema has it).
    fields.update({option: value for option, value in kind_options.items() if value is not None})
    for option in options:
        option_name, equals, value = option.partition("=")
        if not equals:
            raise click.BadParameter("expected NAME=VALUE", param_hint="--option")
        fields[option_name.replace("-", "_")] = value
    if target:
        match = SSH_TARGET.match(target)
        if match is None:
            raise click.BadParameter("expected USER@HOST or USER@HOST:PORT", param_hint="--ssh")
        fields.update(transport="ssh", host=match["host"], port=int(match["port"] or 22), username=match["user"],
                      credentials="user" if per_user else "service")  # fmt: skip
    key = Path(key_file).read_text() if key_file else None
    # Unchecked resources stay hidden from users until an operator has checked and pinned them.
    _save(Resource(name=name, enabled=not target), private_key=key, **fields)
    click.echo(f"Added {name}." + (f" Next: rosetta resources check {name} --pin" if target else ""))


@resources_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--local", "on_host", is_flag=True, help="Read the platform's database here instead of the API.")
def list_resources(as_json, on_host):
    """List where tasks may run (with a token: through the API; operators: --local, every one)."""
    if not on_host and has_client_login():
        return _list_through_api(as_json)
    setup_django()
    from rosetta.computing.models import Resource

    rows = [_summary(resource) for resource in Resource.objects.all()]
    if as_json:
        return click.echo(json.dumps(rows, indent=2))
    for row in rows:
        state = "enabled" if row["enabled"] else "disabled"
        click.echo(f"{row['name']:<20} {state:<9} {row['kind']:<50} {row['where']}")


def _list_through_api(as_json: bool) -> None:
    from rosetta.cli.client import Client
    from rosetta.cli.tasks import echo_json, partition_lines, table
    from rosetta.core.units import format_memory

    resources = Client().request("GET", "/resources")
    if as_json:
        return echo_json(resources)
    if not resources:
        return click.echo("No computing resource is enabled yet.")
    rows = [
        [
            r["name"] + (" (default)" if r.get("default") else ""),
            r["kind"],
            f"{r['max_cpus']:g} CPU, {format_memory(r['max_memory_mb'])}",
            "" if r["enabled"] else "disabled",
        ]
        for r in resources
    ]
    table(rows, ["NAME", "KIND", "UP TO", "STATE"])
    for resource in resources:  # quotas before they bite
        for quota in resource.get("quotas") or []:
            click.echo(f"{resource['name']}: {quota}")
    for resource in resources:  # where a batch job may run, and for how long (task start --partition, --time)
        if resource.get("partitions"):
            click.echo(f"{resource['name']}:")
            click.echo("\n".join(partition_lines(resource)))


@resources_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(name, as_json):
    """Show a resource's settings and what its last check found."""
    setup_django()
    resource = _resource(name)
    if as_json:
        return click.echo(json.dumps(_summary(resource, full=True), indent=2))
    for label, value in _described(resource):
        if value not in (None, ""):
            click.echo(f"{label + ':':<13}{value}")
    facts = resource.facts or {}
    if facts.get("partitions"):
        from rosetta.cli.tasks import partition_lines

        click.echo("partitions:\n" + "\n".join(partition_lines(facts)))


def _described(resource) -> list[tuple[str, str | None]]:
    """A resource's settings, in the words of `resources list` and the task commands."""
    from rosetta.core.units import format_memory, format_minutes
    from rosetta.tasks.services import default_resource

    summary, facts = _summary(resource), resource.facts or {}
    default = default_resource()
    batch, scheduler_options = resource.is_batch, resource.scheduler_options
    return [
        ("name", resource.name + (" (default)" if default is not None and default.pk == resource.pk else "")),
        ("state", "enabled" if resource.enabled else "disabled"),
        ("description", resource.description),
        ("kind", resource.kind),
        ("where", summary["where"]),
        ("up to", f"{resource.max_cpus:g} CPU, {format_memory(resource.max_memory_mb)}"),
        ("machine", f"{resource.node} (its controller alone runs these tasks)" if not resource.host else None),
        ("credentials", resource.get_credentials_display() if resource.host else None),
        ("work dir", resource.work_dir if resource.host else None),
        (
            "outbound",
            "tasks may connect to other machines" if resource.task_outbound else "tasks reach no other machine",
        ),
        ("partition", (scheduler_options.get("partition") or "(the cluster's default)") if batch else None),
        (
            "time limit",
            f"{format_minutes(scheduler_options.get('time_limit_minutes') or 0)} (when a task names none)"
            if batch
            else None,
        ),
        *(
            (name, str(value))
            for name, value in scheduler_options.items()
            if value and name not in ("partition", "time_limit_minutes")
        ),
        (
            "host keys",
            ", ".join(map(_fingerprint, resource.host_keys.splitlines())) or ("none pinned" if resource.host else None),
        ),
        ("checked", facts.get("checked", "")[:16].replace("T", " ") + (" UTC" if facts.get("checked") else "")),
        ("engine", facts.get("engine")),
        ("problems", "; ".join(facts.get("problems") or [])),
    ]


@resources_group.command("check")
@click.argument("name")
@click.option("--pin", is_flag=True, help="Trust the host key it presents now (check its fingerprint first).")
@click.option("--enable", is_flag=True, help="Enable the resource when the check passes.")
def check(name, pin, enable):
    """Connect, show the host key's fingerprint, the engine's version and (Slurm) the partitions."""
    setup_django()
    from rosetta.computing.services import check_resource
    from rosetta.core.units import format_minutes

    resource = _resource(name)
    report = asyncio.run(check_resource(resource, pin=pin))
    for label, value in (("host key", report.host_key), ("pinned", report.pinned if report.host_key else None),
                         ("engine", report.engine)):  # fmt: skip
        if value not in (None, ""):
            click.echo(f"{label + ':':<10}{value}")
    for partition in report.partitions:
        limit = (
            f"up to {format_minutes(partition['max_minutes'])}"
            if partition["max_minutes"] is not None
            else "no time limit"
        )
        click.echo(
            f"partition {partition['name']}{' (default)' if partition['default'] else ''}: {partition['nodes']} "
            f"nodes, {partition['cpus_per_node']} CPUs and {partition['memory_mb_per_node']} MiB each, {limit}"
        )
    for problem in report.problems:
        click.echo(f"problem:  {problem}", err=True)
    if report.problems:
        raise SystemExit(1)
    if enable:
        _save(resource, enabled=True)
        click.echo(f"{name} is enabled.")


@resources_group.command("disable")
@click.argument("name")
def disable(name):
    """Hide a resource from new tasks (running ones go on)."""
    setup_django()
    _save(_resource(name), enabled=False)
    click.echo(f"{name} is disabled.")


@resources_group.command("enable")
@click.argument("name")
def enable(name):
    setup_django()
    _save(_resource(name), enabled=True)
    click.echo(f"{name} is enabled.")


def _fingerprint(public_key: str) -> str:
    """A pinned host key as `resources check` and ssh show it."""
    import asyncssh

    try:
        return asyncssh.import_public_key(public_key).get_fingerprint("sha256")
    except (asyncssh.KeyImportError, ValueError):
        return public_key[:40] + "…"


def _summary(resource, full: bool = False) -> dict:
    summary = {
        "name": resource.name,
        "enabled": resource.enabled,
        "kind": resource.kind,
        "where": f"{resource.username or '(each user)'}@{resource.host}:{resource.port}" if resource.host else "here",
        "max_cpus": resource.max_cpus,
        "max_memory_mb": resource.max_memory_mb,
    }
    if full:
        summary.update(credentials=resource.credentials, work_dir=resource.work_dir,
                       partition=resource.scheduler_options.get("partition", ""),
                       time_limit_minutes=resource.scheduler_options.get("time_limit_minutes", 0),
                       transport_options=resource.transport_options, scheduler_options=resource.scheduler_options,
                       engine_options=resource.engine_options, task_outbound=resource.task_outbound,
                       pinned_host_keys=resource.host_keys.splitlines(), facts=resource.facts)  # fmt: skip
    return summary
