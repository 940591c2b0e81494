"""The `rosetta` command: operator commands and a client for the REST API."""

from __future__ import annotations

import importlib
import sys

import click

from rosetta.cli import server
from rosetta.cli.client import ApiError, Client, save_login
from rosetta.cli.files import files_group
from rosetta.cli.keys import keys_group
from rosetta.cli.quotas import quotas_group
from rosetta.cli.records import records_group
from rosetta.cli.registry import add_to as add_registry_commands
from rosetta.cli.resources import resources_group
from rosetta.cli.software import groups_group, software_group
from rosetta.cli.tasks import task_group
from rosetta.cli.tls import tls_config
from rosetta.cli.tokens import tokens_group
from rosetta.cli.usage import usage_command
from rosetta.cli.users import add_to as add_user_commands
from rosetta.core.paths import keep_private
from rosetta.processes import registry, run
from rosetta.processes.table import PROCESSES

SCIENTIST_COMMANDS = ("login", "task", "software", "resources", "keys", "tokens", "files")


class GroupedHelp(click.Group):
    """Help that lists scientists' commands apart from operators' (which run on the platform's host)."""

    def list_commands(self, ctx):
        return list(self.commands)  # in the order they were added, not alphabetical

    def format_commands(self, ctx, formatter):
        rows = {"scientist": [], "operator": []}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                kind = "scientist" if name in SCIENTIST_COMMANDS else "operator"
                rows[kind].append((name, command.get_short_help_str(limit=80)))
        with formatter.section("Commands for scientists (through the API, with your token)"):
            formatter.write_dl(rows["scientist"])
        with formatter.section("Commands for operators (on the platform's host)"):
            formatter.write_dl(rows["operator"])


@click.group(cls=GroupedHelp, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rosetta", prog_name="rosetta", message="%(prog)s %(version)s")
def cli():
    """Rosetta: run analysis environments as containers and reach them through the gateway.

    Client commands read ROSETTA_URL and ROSETTA_TOKEN, or the login saved by `rosetta login`
    (tokens are made on the Account page).
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
    task_group,
    software_group,
    resources_group,
    run.command,
    *(importlib.import_module(process.entry).command for process in PROCESSES),  # `rosetta NAME`
    server.users,
    server.setup,
    server.manage,
    server.build_image,
    keys_group,
    tokens_group,
    groups_group,
    quotas_group,
    usage_command,
    records_group,
    files_group,
    tls_config,
):
    cli.add_command(command)


add_user_commands(server.users)
add_registry_commands(registry.command)


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
    except KeyboardInterrupt:
        click.echo("", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
