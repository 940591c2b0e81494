"""`rosetta keys ...`: your SSH public keys for the platform's SSH front door."""

from __future__ import annotations

from pathlib import Path

import click

from rosetta.cli.client import ApiError, Client
from rosetta.cli.tasks import echo_json, json_option, table


@click.group("keys")
def keys_group():
    """Your SSH public keys: the SSH front door lets them in to your SSH tasks."""


@keys_group.command("add")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default="", help="A name to tell it apart (default: the key's comment).")
@json_option
def add(path: Path, name: str, as_json: bool):
    """Register the public key in PATH (e.g. ~/.ssh/id_ed25519.pub; '-' reads standard input)."""
    text = _read_key(path)
    key = Client().request("POST", "/me/keys", json={"public_key": text, "name": name})
    if as_json:
        return echo_json(key)
    click.echo(f"Added {key['name']}: {key['kind']} {key['bits']} {key['fingerprint']}")
    click.echo("SSH tasks you start from now on accept it.")


def _read_key(path: Path) -> str:
    if str(path) == "-":
        return click.get_text_stream("stdin").read()
    if not path.name.endswith(".pub") and path.with_name(path.name + ".pub").is_file():
        raise click.BadParameter(f"{path} looks like a private key; give {path}.pub", param_hint="PATH")
    try:
        text = path.read_text(errors="replace")[:20000]
    except OSError as error:
        raise click.BadParameter(f"cannot read {path}: {error.strerror or error}", param_hint="PATH") from None
    if "PRIVATE KEY" in text:  # refused here: a private key must not even be sent
        raise click.BadParameter(f"{path} is a private key; give the public one (.pub)", param_hint="PATH")
    return text


@keys_group.command("list")
@json_option
def list_keys(as_json: bool):
    """List your SSH public keys."""
    keys = Client().request("GET", "/me/keys")
    if as_json:
        return echo_json(keys)
    if not keys:
        return click.echo("No SSH keys yet. Add one with: rosetta keys add ~/.ssh/id_ed25519.pub")
    rows = [[k["id"], k["name"], f"{k['kind']} {k['bits']}", k["fingerprint"], when(k["last_used"])] for k in keys]
    table(rows, ["ID", "NAME", "TYPE", "FINGERPRINT", "LAST USED"])


def when(moment: str | None) -> str:
    return moment[:16].replace("T", " ") if moment else "never"


@keys_group.command("remove")
@click.argument("which")
@json_option
def remove(which: str, as_json: bool):
    """Remove a key, given by its id, fingerprint or name: the door refuses it at once, and ends
    connections open with it within seconds."""
    client = Client()
    keys = client.request("GET", "/me/keys")
    fingerprint = which if which.startswith("SHA256:") else f"SHA256:{which}"
    matches = [k for k in keys if str(k["id"]) == which or k["fingerprint"] == fingerprint] or [
        k for k in keys if k["name"] == which
    ]
    if not matches:
        raise ApiError(404, f"You have no SSH key {which!r} (see `rosetta keys list`).")
    if len(matches) > 1:
        raise ApiError(409, f"Several of your keys are called {which!r}: give its id or fingerprint.")
    key = matches[0]
    client.request("DELETE", f"/me/keys/{key['id']}")
    if as_json:
        return echo_json({"removed": key})
    click.echo(f"Removed {key['name']} ({key['fingerprint']}).")
