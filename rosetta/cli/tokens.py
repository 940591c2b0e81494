"""`rosetta tokens ...`: your API tokens, each limited to what it was made for."""

from __future__ import annotations

from urllib.parse import quote

import click

from rosetta.accounts.tokens import SCOPES
from rosetta.cli.client import Client
from rosetta.cli.keys import when
from rosetta.cli.tasks import echo_json, json_option, table
from rosetta.core.units import parse_days


@click.group("tokens")
def tokens_group():
    """Your API tokens: for scripts, the CLI and external platforms, each with its scopes."""


def days_option(ctx, param, value: str | None) -> int | None:
    """A click callback: ``30d``, ``30`` or ``2w`` as a number of days."""
    if value is None:
        return None
    try:
        return parse_days(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@tokens_group.command("create")
@click.argument("name")
@click.option(
    "--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
    help="What it may do (repeat): read, tasks, files, software, admin. Default: all but admin.",
)  # fmt: skip
@click.option(
    "--expires", default=None, callback=days_option, help="When it stops working: 30d, 2w (default: when revoked)."
)
@json_option
def create(name: str, scopes: tuple[str, ...], expires: str | None, as_json: bool):
    """Make a token called NAME and print it once."""
    body = {"name": name, "scopes": list(scopes) or None, "expires_in_days": expires}
    made = Client().request("POST", "/tokens", json=body)
    if as_json:
        return echo_json(made)
    click.echo(made["token"])
    until = f"until {when(made['expires'])}" if made["expires"] else "until revoked"
    click.echo(f"Token {made['name']} may: {', '.join(made['scopes'])}; {until}. It is not shown again.", err=True)


@tokens_group.command("list")
@json_option
def list_tokens(as_json: bool):
    """List your tokens with their scopes."""
    tokens = Client().request("GET", "/tokens")
    if as_json:
        return echo_json(tokens)
    if not tokens:
        return click.echo("No API tokens. Make one with: rosetta tokens create NAME --scope read")
    rows = [
        [t["name"], f"{t['hint']}…", " ".join(t["scopes"]), when(t["last_used"]),
         "expired" if t["expired"] else (when(t["expires"]) if t["expires"] else "never")]
        for t in tokens
    ]  # fmt: skip
    table(rows, ["NAME", "STARTS", "SCOPES", "LAST USED", "EXPIRES"])


@tokens_group.command("revoke")
@click.argument("name")
@json_option
def revoke(name: str, as_json: bool):
    """Revoke your token NAME: refused from the next request on."""
    said = Client().request("DELETE", f"/tokens/{quote(name, safe='')}")
    if as_json:
        return echo_json(said)
    click.echo(said["detail"])
