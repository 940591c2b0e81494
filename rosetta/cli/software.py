"""`rosetta software list`: the catalogue as the API shows it to you."""

from __future__ import annotations

import click

from rosetta.cli.client import Client
from rosetta.cli.tasks import echo_json, json_option, table


@click.group("software")
def software_group():
    """What you can start: the software catalogue."""


@software_group.command("list")
@json_option
def list_software(as_json: bool):
    """List the software you can start (`rosetta task start NAME`)."""
    entries = Client().request("GET", "/software")
    if as_json:
        return echo_json(entries)
    if not entries:
        return click.echo("The catalogue is empty.")
    table(
        [
            [
                e["name"],
                e["interface_protocol"],
                e["visibility"],
                (e["description"] or "").splitlines()[0][:60] if e["description"] else "",
            ]
            for e in entries
        ],
        ["NAME", "INTERFACE", "VISIBLE TO", "DESCRIPTION"],
    )
