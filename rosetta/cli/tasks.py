"""`rosetta task ...`: client commands over the REST API."""

from __future__ import annotations

import json
import sys
import time

import click

from rosetta.cli.client import ApiError, Client
from rosetta.cli.units import parse_memory_mb
from rosetta.tasks.phases import FINAL_PHASE_NAMES

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group("task")
def task_group():
    """Start, watch and stop your tasks."""


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _show(task: dict) -> None:
    fields = [
        ("id", "id"),
        ("name", "name"),
        ("phase", "phase"),
        ("software", "software"),
        ("version", "software_version"),
        ("digest", "software_digest"),
        ("resource", "resource"),
        ("cpus", "cpus"),
        ("memory", "memory_mb"),
        ("url", "interface_url"),
        ("ssh", "ssh_command"),
        ("exit code", "exit_code"),
        ("created", "created"),
        ("started", "started"),
        ("finished", "finished"),
    ]
    for label, key in fields:
        value = task.get(key)
        if value is not None:
            click.echo(f"{label + ':':<11}{value}{' MiB' if key == 'memory_mb' else ''}")
    if task.get("events"):
        click.echo("events:")
        for event in task["events"]:
            click.echo(f"  {event['time'][:19].replace('T', ' ')}  {event['phase']:<9} {event['reason']}")


@task_group.command("list")
@json_option
def list_tasks(as_json: bool):
    """List your tasks."""
    tasks = Client().request("GET", "/tasks")
    if as_json:
        return _echo_json(tasks)
    if not tasks:
        return click.echo("No tasks yet. Start one with: rosetta task start SOFTWARE --on RESOURCE")
    _table(
        [
            [
                t["id"],
                t["name"],
                t["software"],
                t["resource"],
                t["phase"],
                (t.get("ssh_command") or t["interface_url"]) if t["phase"] == "running" else "",
            ]
            for t in tasks
        ],
        ["ID", "NAME", "SOFTWARE", "RESOURCE", "PHASE", "URL"],
    )


@task_group.command("start")
@click.argument("software", metavar="SOFTWARE[:VERSION]")
@click.option("--on", "resource", required=True, help="Computing resource to run on.")
@click.option("--name", help="A name unique among your tasks.")
@click.option("--cpus", type=float, default=1.0, show_default=True)
@click.option("--memory", default="512M", show_default=True, help="Memory limit, e.g. 512M or 2G.")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable (repeatable).")
@click.option("--wait", is_flag=True, help="Wait until the interface answers (or the task ends).")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to --wait.")
@json_option
def start(software, resource, name, cpus, memory, env, wait, timeout, as_json):
    """Start SOFTWARE on a computing resource."""
    try:
        memory_mb = parse_memory_mb(memory)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--memory") from None
    environment = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        environment[key] = value
    client = Client()
    task = client.request(
        "POST",
        "/tasks",
        retry=True,
        json={
            "software": software,
            "resource": resource,
            "name": name,
            "cpus": cpus,
            "memory_mb": memory_mb,
            "environment": environment,
        },
    )
    if wait:
        task = _wait_until_settled(client, task["id"], timeout)
    if as_json:
        return _echo_json(task)
    _show(task)
    if wait and task["phase"] != "running":
        sys.exit(1)


def _wait_until_settled(client: Client, task_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = client.request("GET", f"/tasks/{task_id}", retry=True)
        if task["phase"] == "running" or task["phase"] in FINAL_PHASE_NAMES:
            return task
        if time.monotonic() > deadline:
            raise ApiError(0, f"Task {task_id} is still {task['phase']} after {timeout:g} s.")
        time.sleep(0.2)


@task_group.command("show")
@click.argument("task_id")
@json_option
def show(task_id, as_json):
    """Show a task with its events."""
    task = Client().request("GET", f"/tasks/{task_id}")
    _echo_json(task) if as_json else _show(task)


@task_group.command("logs")
@click.argument("task_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the task ends.")
@click.option("--tail", type=int, help="Only the last N lines.")
@json_option
def logs(task_id, follow, tail, as_json):
    """Print a task's output."""
    params = {"follow": str(follow).lower(), **({"tail": tail} if tail is not None else {})}
    chunks = Client().stream(f"/tasks/{task_id}/logs", **params)
    if as_json:
        return _echo_json({"id": task_id, "logs": b"".join(chunks).decode(errors="replace")})
    for chunk in chunks:
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


@task_group.command("stop")
@click.argument("task_id")
@json_option
def stop(task_id, as_json):
    """Stop a task (its container is removed)."""
    task = Client().request("POST", f"/tasks/{task_id}/stop", retry=True)
    _echo_json(task) if as_json else click.echo(f"Stopping {task['name']} ({task['id']}).")


@task_group.command("delete")
@click.argument("task_id")
@json_option
def delete(task_id, as_json):
    """Delete a task, stopping it first if needed."""
    result = Client().request("DELETE", f"/tasks/{task_id}")
    _echo_json({"id": task_id, **result}) if as_json else click.echo(result["detail"])
