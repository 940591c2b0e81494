"""`rosetta tokens ...`: your API tokens, each limited to what it was made for."""

from __future__ import annotations

import re
from urllib.parse import quote

import click

from rosetta.accounts.tokens import SCOPES
from rosetta.cli.client import Client
from rosetta.cli.keys import when
from rosetta.cli.tasks import echo_json, json_option, table


@click.group("tokens")
def tokens_group():
    """Your API tokens: for scripts, the CLI and external platforms, each with its scopes."""


def parse_days(text: str) -> int:
    """``30d``, ``30`` (days) or ``2w`` (weeks) as a number of days."""
    found = re.fullmatch(r"\s*(\d{1,4})\s*([dw]?)\s*", text.lower())
    if not found or int(found[1]) == 0:
        raise click.BadParameter(f"{text!r}: give days or weeks, e.g. 30d, 2w", param_hint="--expires")
    return int(found[1]) * (7 if found[2] == "w" else 1)


@tokens_group.command("create")
@click.argument("name")
@click.option(
    "--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
    help="What it may do (repeat): read, tasks, files, software, admin. Default: all but admin.",
)  # fmt: skip
@click.option("--expires", default=None, help="When it stops working: 30d, 2w (default: when revoked).")
@json_option
def create(name: str, scopes: tuple[str, ...], expires: str | None, as_json: bool):
    """Make a token called NAME and print it once."""
    body = {"name": name, "scopes": list(scopes) or None, "expires_in_days": parse_days(expires) if expires else None}
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
