"""Operator commands: manage users, set up the platform and a demo, build the built-in images.
(The platform's processes and `rosetta run` are in rosetta.processes.)"""

from __future__ import annotations

import os
import subprocess
import sys

import click

from rosetta.core.django_setup import setup_django
from rosetta.core.paths import PROJECT_ROOT


@click.group("users")
def users():
    """Manage user accounts (operator)."""


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Staff and superuser: sees and manages every task.")
@click.option("--password-stdin", is_flag=True, help="Read a password for web login from standard input.")
@click.option("--email", default="")
def create_user(name, admin, password_stdin, email):
    """Create a user and print their API token (shown only this once)."""
    setup_django()
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    from rosetta.accounts.services import create_user as create_account
    from rosetta.core.errors import Conflict

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    try:
        if password is not None:
            validate_password(password)  # the rules of settings.AUTH_PASSWORD_VALIDATORS
        _, token = create_account(name, email=email, password=password, admin=admin)
    except ValidationError as error:
        raise click.ClickException(" ".join(error.messages)) from None
    except Conflict as error:
        raise click.ClickException(str(error)) from None
    click.echo(token)


@click.command("setup")
@click.option("--admin-username", default="admin", show_default=True)
@click.option(
    "--demo/--no-demo", default=True, show_default=True, help="Add the demo catalogue and the local resource."
)
def setup(admin_username, demo):
    """Create or update the database; create the admin account and the demo catalogue once."""
    setup_django()
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import call_command

    from rosetta.catalog.demo import ensure_demo_catalogue
    from rosetta.computing import testbed
    from rosetta.storage.demo import ensure_demo_storages

    call_command("migrate", interactive=False, verbosity=0)
    from rosetta.computing.instance import instance_id

    instance_id()  # the installation's, recorded in the database by the first machine set up
    _ensure_admin(admin_username)
    if demo:
        try:
            said = ensure_demo_catalogue()
        except ImproperlyConfigured as error:
            raise click.ClickException(str(error)) from None
        for line in [*said, *testbed.register()]:  # the test bed's resources, when it is up
            click.echo(line)
        for line in ensure_demo_storages():
            click.echo(line)


def _ensure_admin(username: str) -> None:
    from django.contrib.auth import get_user_model

    from rosetta.accounts.services import new_password

    User = get_user_model()
    if User.objects.filter(username=username).exists():
        click.echo(f"Admin account {username!r} exists already (its password was printed when it was created).")
        return
    password = new_password()
    User.objects.create_superuser(username, password=password)
    click.echo(f"Created the admin account.  user: {username}  password: {password}  (shown only this once)")


@click.command("manage", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def manage(ctx):
    """Run a Django management command (e.g. `rosetta manage createsuperuser`)."""
    setup_django()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["rosetta manage", *ctx.args])


@click.command("build-image")
@click.argument("name")
@click.option("--force", is_flag=True)
def build_image(name, force):
    """Build a built-in environment from images/NAME."""
    from rosetta.computing.engines.podman import local_containers_conf

    env = {**os.environ, "CONTAINERS_CONF": str(local_containers_conf())}
    argv = [str(PROJECT_ROOT / "images" / "build.sh"), name, *(["--force"] if force else [])]
    # Not the platform's private umask: files the build makes go into images, whose users must read them.
    status = subprocess.call(argv, env=env, umask=0o022)
    if status == 0:
        from rosetta.cli.registry import push_built_image

        for line in push_built_image(f"localhost/rosetta/{name}"):  # other machines pull it from there
            click.echo(line)
    sys.exit(status)
