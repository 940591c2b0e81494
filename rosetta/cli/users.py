"""`rosetta users list | deactivate | reactivate | set-password | set-remote-name | link`: operators run
the place from the platform's host (the same as the staff pages' Users)."""

from __future__ import annotations

import sys

import click

from rosetta.core.django_setup import setup_django


def user_named(name: str):
    """The user called ``name``, or a ClickException saying there is none (operators' commands)."""
    from django.contrib.auth import get_user_model

    found = get_user_model().objects.filter(username=name).first()
    if found is None:
        raise click.ClickException(f"There is no user called {name!r} (see `rosetta users list`).")
    return found


@click.command("list")
def list_users():
    """List users with their role, state and active tasks."""
    setup_django()
    from django.contrib.auth import get_user_model
    from django.db.models import Count, Q

    from rosetta.cli.tasks import table
    from rosetta.tasks.phases import FINAL_PHASE_NAMES

    users = (
        get_user_model()
        .objects.annotate(active_tasks=Count("tasks", filter=~Q(tasks__phase__in=FINAL_PHASE_NAMES)))
        .order_by("username")
    )
    rows = [
        [
            u.username,
            "staff" if u.is_staff else "user",
            "active" if u.is_active else "deactivated",
            str(u.active_tasks),
            f"{u.last_login:%Y-%m-%d %H:%M}" if u.last_login else "never",
        ]
        for u in users
    ]
    table(rows, ["USER", "ROLE", "STATE", "ACTIVE TASKS", "LAST LOGIN (UTC)"])


@click.command("deactivate")
@click.argument("name")
def deactivate(name):
    """End NAME's logins, API tokens and task access at once, and stop their tasks."""
    setup_django()
    from rosetta.accounts.services import deactivate as deactivate_user

    stopped = deactivate_user(user_named(name))
    tasks = (
        f"their {stopped} active task{'s are' if stopped != 1 else ' is'} being stopped"
        if stopped
        else "they had no active task"
    )
    click.echo(
        f"{name} was deactivated: logins, API tokens and task access end now; {tasks}. Their API tokens never "
        "work again: reactivated, they make new ones."
    )


@click.command("reactivate")
@click.argument("name")
def reactivate(name):
    """Let NAME log in again, with new API tokens only (their old ones are revoked; SSH keys stay)."""
    setup_django()
    from rosetta.accounts.services import reactivate as reactivate_user

    user = user_named(name)
    if user.is_active:
        return click.echo(f"{name} is active already; nothing changed.")
    revoked = reactivate_user(user)
    tokens = (
        f"their {revoked} old API token{'s were' if revoked != 1 else ' was'} revoked"
        if revoked
        else "no old API token to revoke"
    )
    new_ones = (
        "they make new tokens on their Account page"
        if user.has_usable_password()
        else f"they need a password to make new tokens on their Account page: rosetta users set-password {name}"
    )
    click.echo(f"{name} was reactivated ({tokens}): {new_ones}. Their SSH keys are kept.")


@click.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else one is made).")
def set_password(name, password_stdin):
    """Give NAME a new password (printed when Rosetta makes one) and end their sessions."""
    setup_django()
    from django.core.exceptions import ValidationError

    from rosetta.accounts.services import reset_password

    given = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        password = reset_password(user_named(name), given)
    except ValidationError as error:
        raise click.ClickException(" ".join(error.messages)) from None
    click.echo(f"{name}'s password was changed." if given else password)


@click.command("set-remote-name")
@click.argument("name")
@click.argument("remote_name")
@click.option("--shared", is_flag=True, help="Let NAME share the account with the users who hold it already.")
def set_remote_name(name, remote_name, shared):
    """Make REMOTE_NAME (empty: NAME itself) NAME's account on resources where users are their own
    accounts. No user may hold one another holds, unless --shared."""
    setup_django()
    from django.core.exceptions import ValidationError

    from rosetta.computing.remote_names import assign
    from rosetta.core.errors import Conflict

    try:
        identity = assign(user_named(name), remote_name, shared=shared)
    except ValidationError as error:
        raise click.ClickException(" ".join(error.messages)) from None
    except Conflict as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Rosetta logs in as {identity.remote_name} for {name}" + (" (shared)." if shared else "."))


@click.command("link")
@click.argument("name")
@click.option("--subject", required=True, help="The user's subject (sub) at the identity provider.")
@click.option("--issuer", default=None, help="The identity provider (default: ROSETTA_OIDC_ISSUER).")
def link(name, subject, issuer):
    """Let the identity provider's user SUBJECT log in as the existing account NAME."""
    setup_django()
    from rosetta.accounts.identity import link as link_identity

    try:
        identity = link_identity(user_named(name), subject, issuer)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{name} now logs in as {identity.subject!r} at {identity.issuer}.")


def add_to(group: click.Group) -> None:
    for command in (list_users, deactivate, reactivate, set_password, set_remote_name, link):
        group.add_command(command)
