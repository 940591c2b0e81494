"""`rosetta software ...`: the catalogue through the REST API (browse, add, build, change);
`rosetta builder` runs the builder; `rosetta groups` (operator) manages who shares with whom."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from rosetta.cli.client import Client
from rosetta.cli.tasks import _environment, echo_json, json_option, table
from rosetta.cli.users import user_named
from rosetta.core.django_setup import setup_django

POLL = 0.5


@click.group("software")
def software_group():
    """Browse the catalogue, add your own software (an image or a Containerfile), change it.

    SOFTWARE is NAME, NAME:VERSION or OWNER/NAME:VERSION: your own entry of that name first,
    then the platform's, then one another user shares with you; without a version, the newest."""


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12] if digest else "-"


@software_group.command("list")
@click.option("-q", "--search", "text", default="", help="Words to find in names, descriptions, images.")
@click.option("--interface", type=click.Choice(["http", "https", "ssh", "other"]), help="Only this interface kind.")
@click.option("--on", "resource", default="", help="Only what can run on this resource now.")
@click.option("--mine", is_flag=True, help="Only your own software.")
@click.option("--retired", is_flag=True, help="Retired entries too.")
@click.option("--all", "all_owners", is_flag=True, help="Staff: every user's entries, hidden ones too.")
@json_option
def list_software(text, interface, resource, mine, retired, all_owners, as_json):
    """List the catalogue: every version of every software you may start."""
    params = {"q": text, "resource": resource, "include_retired": retired, "all_owners": all_owners}
    if interface:
        params["interface"] = interface
    if mine:
        params["owner"] = "mine"
    if all_owners:
        params["include_hidden"] = True
    entries = Client().request("GET", "/software", params=params)
    if as_json:
        return echo_json(entries)
    if not entries:
        return click.echo("Nothing in the catalogue matches." if any(params.values()) else "The catalogue is empty.")
    rows = [
        [
            e["name"],
            e["version"],
            e["owner"] or "-",
            e["interface_protocol"],
            _short(e["digest"]),
            ",".join(r["resource"] for r in e["runs_on"] if r["ready"]) or "-",
            e["status"] if e["status"] != "listed" else "",
            " ".join(e["description"].split()),  # whole: wrapped on a terminal, one line when piped
        ]
        for e in entries
    ]
    table(rows, ["NAME", "VERSION", "OWNER", "INTERFACE", "DIGEST", "RUNS ON", "STATUS", "DESCRIPTION"], wrap_last=True)


def _resolve(client: Client, reference: str, manage: bool = False) -> dict:
    if reference.isdigit():
        return client.request("GET", f"/software/{reference}")
    return client.request("GET", "/software/resolve", params={"reference": reference, "manage": manage})


def _show(entry: dict) -> None:
    fields = [
        ("reference", entry["reference"]),
        ("id", entry["id"]),
        ("owner", entry["owner"] or "(Rosetta)"),
        ("status", entry["status"]),
        ("description", entry["description"] or "-"),
        ("interface", f"{entry['interface_protocol']} on port {entry['interface_port']}"),
        ("base port", "listens on BASE_PORT when set" if entry["honours_base_port"] else "not supported"),
        ("login", "its own (Authorization passed through)" if entry["own_authorization"] else "through Rosetta"),
        ("environment", " ".join(f"{k}={v}" for k, v in entry["environment"].items()) or "-"),
        ("image", entry["image"]),
        ("digest", entry["digest"] or "-"),
        ("registry", entry["registry_state"] + (f" ({entry['registry_reason']})" if entry["registry_reason"] else "")),
        ("visible to", entry["visibility"] + (f" {entry['group']}" if entry["group"] else "")),
        ("source", entry["source"]),
        ("created", entry["created"]),
    ]
    for label, value in fields:
        click.echo(f"{label + ':':<13}" + str(value).replace("\n", "\n" + " " * 13))  # a description's lines, aligned
    click.echo("runs on:")
    for row in entry["runs_on"]:
        click.echo(f"  {row['resource']:<20} {'ready' if row['ready'] else row['note']}")


@software_group.command("show")
@click.argument("software")
@json_option
def show(software, as_json):
    """Show one entry: SOFTWARE as above, or its id."""
    entry = _resolve(Client(), software, manage=True)
    echo_json(entry) if as_json else _show(entry)


OWN_LOGIN = "It does its own HTTP login: the browser's Authorization header reaches it, no task secret is sent."


def _declared_options(function):
    options = [
        click.option("--version", "version", default="1", show_default=True, help="This entry's version."),
        click.option("--description", default=""),
        click.option("--interface", type=click.Choice(["http", "https", "ssh", "other"]), default="http"),
        click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Its port."),
        click.option("--base-port", is_flag=True, help="It listens on BASE_PORT when that is set."),
        click.option("--own-login", is_flag=True, help=OWN_LOGIN),
        click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable (repeatable)."),
        click.option(
            "--visibility", type=click.Choice(["private", "group", "everyone"]), default="private", show_default=True
        ),
        click.option("--group", help="The group that sees it (with --visibility group)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _declared(version, description, interface, port, base_port, own_login, env, visibility, group) -> dict:
    environment = _environment(env)
    return {
        "version": version,
        "description": description,
        "interface_protocol": interface,
        "interface_port": port,
        "honours_base_port": base_port,
        "own_authorization": own_login,
        "environment": environment,
        "visibility": visibility,
        "group": group,
    }


@software_group.command("add")
@click.argument("name")
@click.option("--image", required=True, help="The image reference, e.g. localhost/lab/tool:1.0")
@_declared_options
@json_option
def add(name, image, as_json, **declared):
    """Register an existing image as your software NAME."""
    payload = {"name": name, "image": image, **_declared(**declared)}
    entry = Client().request("POST", "/software", retry=True, json=payload)
    echo_json(entry) if as_json else click.echo(f"Added {entry['reference']} ({entry['image']}).")


@software_group.command("build")
@click.argument("name")
@click.option(
    "-f", "--file", "containerfile", required=True, type=click.File("r"), help="The Containerfile ('-': stdin)."
)
@click.option("--no-follow", is_flag=True, help="Queue the build and return; follow it on the build's page.")
@_declared_options
@json_option
def build(name, containerfile, no_follow, as_json, **declared):
    """Build an image from a Containerfile here and add it as your software NAME once it builds.

    The Containerfile is the whole build context. Its log is printed as it comes; the command
    fails (status 1) with the reason when the build fails, and then nothing is added."""
    client = Client()
    text = containerfile.read()
    started = client.request(
        "POST", "/software/builds", retry=True, json={"name": name, "containerfile": text, **_declared(**declared)}
    )
    if no_follow:
        return echo_json(started) if as_json else click.echo(f"Build {started['id']} of {name} is queued.")
    result = follow_build(client, started["id"], quiet=as_json)
    if as_json:
        echo_json(result)
    elif result["state"] == "succeeded":
        entry = client.request("GET", f"/software/{result['software']}")
        copied = entry["registry_state"] == "pushed" and entry["digest"] == entry["registry_digest"]
        which = "the platform registry's manifest digest" if copied else "this machine's image digest, until copied"
        click.echo(f"Added {entry['reference']} ({entry['image']}, {entry['digest']}: {which}).")
    if result["state"] != "succeeded":
        if not as_json:
            click.echo(f"Error: the build failed, nothing was added: {result['reason']}", err=True)
        sys.exit(1)


def follow_build(client: Client, build_id: int, quiet: bool = False) -> dict:
    """Print the build's log as it comes (to stderr with ``quiet``) until it ends; its last state."""
    offset, said_queued = 0, False
    while True:
        build = client.request("GET", f"/software/builds/{build_id}", params={"offset": offset}, retry=True)
        if build["log"]:
            (sys.stderr if quiet else sys.stdout).write(build["log"])
            (sys.stderr if quiet else sys.stdout).flush()
        offset = build["next_offset"]
        if build["state"] == "queued" and not said_queued and build["queue_position"]:
            click.echo(f"Waiting for the builder ({build['queue_position']} before this one).", err=True)
            said_queued = True
        if build["state"] in ("succeeded", "failed"):
            return build
        time.sleep(POLL)


@software_group.command("builds")
@json_option
def builds(as_json):
    """Your builds, newest first."""
    found = Client().request("GET", "/software/builds")
    if as_json:
        return echo_json(found)
    if not found:
        return click.echo("No builds yet. Build one with: rosetta software build NAME -f Containerfile")
    table(
        [[b["id"], f"{b['name']}:{b['version']}", b["state"], b["created"][:19], b["reason"][:60]] for b in found],
        ["ID", "SOFTWARE", "STATE", "CREATED", "REASON"],
    )


@software_group.command("edit")
@click.argument("software")
@click.option("--description")
@click.option("--interface", type=click.Choice(["http", "https", "ssh", "other"]))
@click.option("--port", type=click.IntRange(1, 65535))
@click.option("--base-port/--no-base-port", default=None)
@click.option("--own-login/--no-own-login", default=None, help=OWN_LOGIN)
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Replaces its environment (repeatable).")
@click.option("--clear-env", is_flag=True, help="Remove its environment variables.")
@click.option("--visibility", type=click.Choice(["private", "group", "everyone"]))
@click.option("--group")
@json_option
def edit(software, description, interface, port, base_port, own_login, env, clear_env, visibility, group, as_json):
    """Change what an entry says (owner or staff). Its image never changes."""
    changes = {
        "description": description,
        "interface_protocol": interface,
        "interface_port": port,
        "honours_base_port": base_port,
        "own_authorization": own_login,
        "visibility": visibility,
        "group": group,
    }
    changes = {key: value for key, value in changes.items() if value is not None}
    if env or clear_env:
        changes["environment"] = _environment(env)
    if not changes:
        raise click.UsageError("Nothing to change: give at least one option.")
    _patch(software, changes, as_json, "Saved")


def _patch(reference: str, changes: dict, as_json: bool, said: str) -> None:
    client = Client()
    entry = _resolve(client, reference, manage=True)
    entry = client.request("PATCH", f"/software/{entry['id']}", json=changes)
    who = f"{entry['owner']}/" if entry["owner"] else ""
    echo_json(entry) if as_json else click.echo(f"{said} {who}{entry['reference']}.")


@software_group.command("hide")
@click.argument("software")
@json_option
def hide(software, as_json):
    """Take an entry off the catalogue; it stays startable by its exact NAME:VERSION."""
    _patch(software, {"status": "hidden"}, as_json, "Hid")


@software_group.command("retire")
@click.argument("software")
@json_option
def retire(software, as_json):
    """Retire an entry: no new task starts it; tasks that used it keep showing it."""
    _patch(software, {"status": "retired"}, as_json, "Retired")


@software_group.command("restore")
@click.argument("software")
@json_option
def restore(software, as_json):
    """List a hidden or retired entry again."""
    _patch(software, {"status": "listed"}, as_json, "Listed")


# -- operator commands ----------------------------------------------------------------------------


@click.group("groups")
def groups_group():
    """Groups of users, which software can be shared with (operator)."""


@groups_group.command("add")
@click.argument("group")
@click.argument("users", nargs=-1)
def groups_add(group, users):
    """Create GROUP if needed and put USERS in it."""
    setup_django()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    found = {user.username: user for user in get_user_model().objects.filter(username__in=users)}
    missing = sorted(set(users) - set(found))
    if missing:
        raise click.ClickException(f"No user called {', '.join(missing)}.")
    target, created = Group.objects.get_or_create(name=group)
    target.user_set.add(*found.values())
    click.echo(f"{'Created' if created else 'Changed'} group {group}: {', '.join(_members(target)) or 'no members'}.")


@groups_group.command("remove")
@click.argument("group")
@click.argument("users", nargs=-1, required=True)
def groups_remove(group, users):
    """Take USERS out of GROUP."""
    setup_django()
    from django.contrib.auth.models import Group

    target = Group.objects.filter(name=group).first()
    if target is None:
        raise click.ClickException(f"There is no group called {group!r}.")
    target.user_set.remove(*target.user_set.filter(username__in=users))
    click.echo(f"Group {group}: {', '.join(_members(target)) or 'no members'}.")


@groups_group.command("list")
def groups_list():
    """Every group and its members."""
    setup_django()
    from django.contrib.auth.models import Group

    for group in Group.objects.order_by("name"):
        click.echo(f"{group.name}: {', '.join(_members(group)) or '-'}")


def _members(group) -> list[str]:
    return list(group.user_set.order_by("username").values_list("username", flat=True))


def _owner(name: str | None):
    return None if name is None else user_named(name)


@software_group.command("export")
@click.argument("reference")
@click.option("-o", "--output", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A new folder for image.tar (OCI archive) and software.json.")  # fmt: skip
@click.option("--owner", default=None, help="Whose entry (default: the platform's).")
def export_command(reference: str, directory: Path, owner: str | None):
    """Operators: write an entry's image and what it says, to import on another Rosetta."""
    setup_django()
    from rosetta.catalog.models import Software
    from rosetta.catalog.transfer import TransferFailed, export_software

    name, _, version = reference.partition(":")
    entries = Software.objects.filter(owner=_owner(owner), name=name)
    found = entries.filter(version=version).first() if version else entries.order_by("-created").first()
    if found is None:
        raise click.ClickException(f"There is no software {reference} (of {owner or 'the platform'}).")
    try:
        metadata = export_software(found, directory)
    except TransferFailed as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Exported {found.reference} ({metadata['digest']}) to {directory}.")


@software_group.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--owner", default=None, help="Make it this user's private entry (default: the platform's, for all).")
def import_command(directory: Path, owner: str | None):
    """Operators: add software that `rosetta software export` wrote, with the same digest."""
    setup_django()
    from django.core.exceptions import ValidationError

    from rosetta.catalog.transfer import TransferFailed, import_software
    from rosetta.core.errors import Conflict

    try:
        software = import_software(directory, _owner(owner))
    except (TransferFailed, Conflict) as error:
        raise click.ClickException(str(error)) from None
    except ValidationError as error:
        raise click.ClickException(" ".join(error.messages)) from None
    click.echo(f"Imported {software.reference} ({software.image_digest}) as {software.image}.")
