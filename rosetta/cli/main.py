"""The `rosetta` command: operator commands and a client for the REST API."""

from __future__ import annotations

import sys

import click

from rosetta.cli import server
from rosetta.cli.client import ApiError, Client, save_login
from rosetta.cli.files import files_group
from rosetta.cli.keys import keys_group
from rosetta.cli.registry import registry_group
from rosetta.cli.resources import resources_group
from rosetta.cli.software import builder, groups_group, software_group
from rosetta.cli.tasks import task_group
from rosetta.core.paths import keep_private


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Rosetta: run analysis environments as containers and reach them through the gateway.

    Client commands read ROSETTA_URL and ROSETTA_TOKEN, or the login saved by `rosetta login`.
    """


@cli.command("login")
@click.option("--url", default="http://localhost:8000", show_default=True)
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input instead of prompting.")
def login(url, token_stdin):
    """Save the platform's URL and your API token for later commands."""
    token = sys.stdin.readline().strip() if token_stdin else click.prompt("API token", hide_input=True)
    user = Client(url, token).request("GET", "/me")
    path = save_login(url, token)
    click.echo(f"Logged in to {url} as {user['username']} (saved in {path}).")


for command in (
    server.run,
    server.web,
    server.controller,
    server.gateway,
    server.ssh_door,
    server.users,
    server.setup,
    server.manage,
    server.build_image,
    task_group,
    keys_group,
    software_group,
    builder,
    groups_group,
    resources_group,
    registry_group,
    files_group,
):
    cli.add_command(command)


def main() -> None:
    keep_private()  # inherited by every process the platform starts: web, controller, gateway
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except ApiError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
