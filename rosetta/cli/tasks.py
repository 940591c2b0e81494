"""`rosetta task ...`: client commands over the REST API. A TASK is its name or its id."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time
from datetime import UTC, datetime
from urllib.parse import quote

import click

from rosetta.cli.client import ApiError, Client
from rosetta.core.units import TIME_EXAMPLES, format_memory, format_minutes, parse_memory_mb, parse_time_limit_minutes
from rosetta.tasks.phases import FINAL_PHASE_NAMES

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
wait_option = click.option("--wait", is_flag=True, help="Wait until the interface answers (or the task ends).")
timeout_option = click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to --wait.")


@click.group("task")
def task_group():
    """Start, watch, relaunch and stop your tasks.

    A TASK is its name or its id.
    """


def task_path(task: str, action: str = "") -> str:
    return f"/tasks/{quote(task, safe='')}" + (f"/{action}" if action else "")


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


MIN_WRAPPED_WIDTH = 30  # the narrowest a wrapped last column gets, however wide the others are


def table(rows: list[list[str]], headers: list[str], *, wrap_last: bool = False) -> None:
    """Columns padded to their widest cell. With ``wrap_last``, the last column (free text)
    wraps on a terminal (or where COLUMNS says its width) under itself; piped, it is whole."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    indent = sum(widths[:-1]) + 2 * (len(widths) - 1)
    terminal = shutil.get_terminal_size(fallback=(0, 0)).columns
    room = max(terminal - indent, MIN_WRAPPED_WIDTH) if wrap_last and terminal else 0
    for row in [headers, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines = textwrap.wrap(str(row[-1]), room) if room else [str(row[-1])]
        click.echo("  ".join([*cells, lines[0] if lines else ""]).rstrip())
        for line in lines[1:]:
            click.echo(" " * indent + line)


def _parse_time(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


def clock(seconds: float) -> str:
    """0:42, 1:05:00: how long, as a clock shows it."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02}:{rest % 60:02}" if hours else f"{rest // 60}:{rest % 60:02}"


def ago(iso: str | None) -> str:
    """'3 min ago', '2 h ago': relative, as people read a list."""
    when = _parse_time(iso)
    if when is None:
        return ""
    seconds = (datetime.now(UTC) - when).total_seconds()
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def phase_text(task: dict) -> str:
    """The phase, with an exit code that is not clean said beside it."""
    if task["phase"] == "exited" and task.get("exit_code") not in (0, None):
        return f"exited ({task['exit_code']})"
    return task["phase"]


DIGEST_KINDS = {
    "registry": "the manifest digest in the platform's registry, as the catalogue shows it",
    "local": "this machine's image digest, not copied to the platform's registry",
}


def digest_text(task: dict) -> str | None:
    """The image digest the task was started with, and which digest that is."""
    digest = task.get("software_digest")
    if not digest:
        return None
    kind = DIGEST_KINDS.get(task.get("software_digest_kind") or "")
    return f"{digest} ({kind})" if kind else digest


def left_text(seconds: int | None) -> str:
    """'58 min', '1 h 30 min': what a batch job's time limit leaves it."""
    if seconds is None:
        return ""
    return format_minutes(seconds // 60) if seconds >= 60 else f"{seconds} s"


NOT_PLANNED = "not known yet (the scheduler has not planned it)"


def batch_fields(task: dict) -> list[tuple[str, str | None]]:
    """Where a batch scheduler has the task: its limits, job, node, why it waits, when it
    should start, how long it has left. Nothing for tasks without a batch job."""
    placement = task.get("placement") or {}
    if not (task.get("partition") or task.get("time_limit_minutes") or any(placement.values())):
        return []
    limit, queued = task.get("time_limit_minutes"), task["phase"] == "queued"
    return [
        ("partition", task.get("partition") or "(the resource's default)"),
        ("max time", format_minutes(limit) if limit else "(the resource's default)"),
        ("job", placement.get("job")),
        ("node", placement.get("node")),
        ("pending", f"{placement['reason']} (the scheduler's reason)" if queued and placement.get("reason") else None),
        ("starts at", (_local_time(placement.get("starts_at")) or NOT_PLANNED) if queued else None),
        ("time left", left_text(task.get("time_left_seconds")) or None),
    ]


def _local_time(iso: str | None) -> str | None:
    """An API time as this terminal's local time, with its zone."""
    when = _parse_time(iso)
    return when.astimezone().strftime("%Y-%m-%d %H:%M %Z") if when else None


def show_task(task: dict) -> None:
    fields = [
        ("id", task["id"]),
        ("name", task["name"]),
        ("phase", phase_text(task)),
        ("software", task["software"]),
        ("version", task.get("software_version")),
        ("digest", digest_text(task)),
        ("resource", task["resource"]),
        ("cpus", f"{task['cpus']:g}"),
        ("memory", format_memory(task["memory_mb"])),
        *batch_fields(task),
        (
            "url",
            task["interface_url"] if task["phase"] in ("starting", "running") and not task.get("ssh_command") else None,
        ),
        ("ssh", task.get("ssh_command")),
        ("host key", (task.get("ssh") or {}).get("host_key_fingerprint")),  # the task's own server's
        ("exit code", task.get("exit_code")),
        ("created", task.get("created")),
        ("started", task.get("started")),
        ("finished", task.get("finished")),
    ]
    for label, value in fields:
        if value is not None:
            click.echo(f"{label + ':':<11}{value}")
    show_kept(task)
    if task.get("outcome") == "failed" and task.get("reason"):
        click.echo(f"{'why:':<11}{task['reason']}")
        click.echo(f"{'':<11}Start it again with: rosetta task relaunch {task['name']}")
    if task.get("events"):
        click.echo("events:")
        for event in task["events"]:
            click.echo(f"  {event['time'][:19].replace('T', ' ')}  {event['phase']:<9} {event['reason']}")


def show_kept(task: dict) -> None:
    """The storages mounted, and what outlives the task (detail answers say it)."""
    if "kept" not in task:
        return
    mounts = ", ".join(
        f"{mount['storage'] or '(removed)'} at {mount['target']}{' (read-only)' if mount['read_only'] else ''}"
        for mount in task.get("mounts") or []
    )
    click.echo(f"{'storages:':<11}{mounts or 'none'}")
    lines = textwrap.wrap(task["kept"], width=88) or [""]
    click.echo(f"{'kept:':<11}{lines[0]}")
    for line in lines[1:]:
        click.echo(f"{'':<11}{line}")


PAGE_LIMIT = 500  # the largest page the API gives: fewest requests for a long list


def listed_tasks(client: Client, phase: str, limit: int | None = None) -> tuple[list[dict], bool]:
    """The tasks the API lists, newest first, page after page: every one, or the newest ``limit``;
    and whether there are more than those."""
    tasks: list[dict] = []
    cursor = None
    while True:
        wanted = PAGE_LIMIT if limit is None else min(PAGE_LIMIT, limit - len(tasks))
        params = {"phase": phase, "limit": wanted, **({"cursor": cursor} if cursor else {})}
        page = client.request("GET", "/tasks", params=params)
        tasks += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return tasks, False
        if limit is not None and len(tasks) >= limit:
            return tasks, True


@task_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Finished tasks too (default: active ones only).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the newest N (default: every one).")
@json_option
def list_tasks(show_all: bool, limit: int | None, as_json: bool):
    """List your active tasks (--all: finished ones too), newest first."""
    tasks, more = listed_tasks(Client(), "all" if show_all else "active", limit)
    if as_json:
        return echo_json(tasks)
    if not tasks:
        hint = "" if show_all else " (finished ones: rosetta task list --all)"
        return click.echo(f"No active tasks{hint}. Start one with: rosetta task start SOFTWARE")
    task_table(tasks)
    if more:
        click.echo(f"The newest {limit} are shown; older ones: --limit {2 * limit}, or leave --limit out for all.")


def task_table(tasks: list[dict]) -> None:
    everyone = len({t["owner"] for t in tasks}) > 1  # staff see every user's tasks
    batch = any(t.get("time_left_seconds") is not None for t in tasks)  # a column only where it says something
    table(
        [
            [
                *([t["owner"]] if everyone else []),
                t["name"],
                t["id"],
                t["software"],
                t["resource"],
                phase_text(t),
                ago(t["phase_since"]),
                *([left_text(t.get("time_left_seconds"))] if batch else []),
                (t.get("ssh_command") or t["interface_url"])
                if t["phase"] == "running"
                else (t["reason"] if t["outcome"] == "failed" else ""),
            ]
            for t in tasks
        ],
        [
            *(["OWNER"] if everyone else []),
            *["NAME", "ID", "SOFTWARE", "RESOURCE", "PHASE", "SINCE"],
            *(["TIME LEFT"] if batch else []),
            "URL / WHY",
        ],
    )


def _environment(env: tuple[str, ...]) -> dict[str, str]:
    environment = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        environment[key] = value
    return environment


def _memory(text: str) -> int:
    try:
        return parse_memory_mb(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--memory") from None


# Which storages a task mounts: the one at /home/rosetta is its home, kept from task to task.
def storage_options(command):
    command = click.option(
        "--no-storage", is_flag=True, help="Mount no storage: the home is scratch space, lost when the task ends."
    )(command)
    return click.option(
        "--storage", "storages", multiple=True, metavar="NAME[:MOUNT]",
        help="Mount this storage (repeatable), at its own mount point or at MOUNT. Default: the software's default "
        "storages (`rosetta files ls`); the one at /home/rosetta is your home, kept from task to task.",
    )(command)  # fmt: skip


def _storages(storages: tuple[str, ...], no_storage: bool) -> dict:
    if no_storage and storages:
        raise click.BadParameter("give --storage or --no-storage, not both", param_hint="--no-storage")
    if no_storage:
        return {"storages": []}
    return {"storages": list(storages)} if storages else {}


# -- batch jobs: where on a cluster, for how long (`rosetta resources show` lists the limits) --------
# --partition and --time are the API's own fields; --account, --qos and --gres go in its `options`
# (the scheduler kind's request options: the resource's scheduler validates them).


def _time_limit(context, parameter, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_time_limit_minutes(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def batch_options(function):
    options = [
        click.option("--partition", help="Batch clusters: the partition to run in (default: the resource's)."),
        click.option(
            "--time",
            "time_limit",
            metavar="LIMIT",
            callback=_time_limit,
            help=f"Batch clusters: how long the job may run, {TIME_EXAMPLES} (default: the resource's).",
        ),
        click.option("--account", help="Batch clusters: the account the job is charged to (default: the resource's)."),
        click.option("--qos", help="Batch clusters: the quality of service to ask for (default: the resource's)."),
        click.option(
            "--gres", help="Batch clusters: generic resources per node, e.g. gpu:2 (default: the resource's)."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def partition_lines(resource: dict) -> list[str]:
    """A batch resource's partitions with their limits (as its last check found them), one line each."""
    return [
        f"  partition {p['name']}{' (default)' if p['default'] else ''}: "
        f"{'up to ' + format_minutes(p['max_minutes']) if p['max_minutes'] else 'no time limit'}, "
        f"{p['cpus_per_node']} CPUs and {format_memory(p['memory_mb_per_node'])} per node"
        for p in resource.get("partitions") or []
    ]


def batch_request(partition: str | None, time_limit: int | None, **options: str | None) -> dict:
    """The batch options as the API takes them: only those given."""
    asked = {name: value for name, value in options.items() if value}
    return {
        **({"partition": partition} if partition else {}),
        **({"time_limit_minutes": time_limit} if time_limit else {}),
        **({"options": asked} if asked else {}),
    }


@task_group.command("start")
@click.argument("software", metavar="SOFTWARE[:VERSION]", required=False)
@click.option("--on", "resource", help="Computing resource to run on (default: the platform's default resource).")
@click.option(
    "--from", "record", type=click.File("r"), default=None,
    help="Run a task's record again (`rosetta task record NAME --json > FILE`): the same image, by digest, and "
    "request; --on chooses another resource.",
)  # fmt: skip
@click.option("--name", help="A name unique among your active tasks.")
@click.option("--cpus", type=float, default=1.0, show_default=True)
@click.option("--memory", default="512M", show_default=True, help="Memory limit, e.g. 512M or 2G.")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable (repeatable).")
@storage_options
@batch_options
@wait_option
@timeout_option
@json_option
def start(software, resource, record, name, cpus, memory, env, storages, no_storage, partition, time_limit, account,
          qos, gres, wait, timeout, as_json):  # fmt: skip
    """Start SOFTWARE (see `rosetta software list`) on a computing resource, or a record again (--from)."""
    if record is not None:
        return _start_from_record(record, resource, wait, timeout, as_json)
    if software is None:
        raise click.UsageError("Say which SOFTWARE to start, or give a task's record with --from FILE.")
    payload = {"software": software, "name": name, "cpus": cpus, "memory_mb": _memory(memory)}
    payload["environment"] = _environment(env)
    payload.update(batch_request(partition, time_limit, account=account, qos=qos, gres=gres))
    if resource:
        payload["resource"] = resource
    payload |= _storages(storages, no_storage)
    client = Client()
    task = client.request("POST", "/tasks", retry=True, json=payload)
    report_start(client, task, wait, timeout, as_json)


def _start_from_record(record, resource: str | None, wait: bool, timeout: float, as_json: bool) -> None:
    try:
        document = json.load(record)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--from") from None
    client = Client()
    task = client.request("POST", "/tasks", retry=True, json={"from_record": document, "resource": resource})
    report_start(client, task, wait, timeout, as_json)


@task_group.command("relaunch")
@click.argument("task")
@wait_option
@timeout_option
@json_option
def relaunch(task, wait, timeout, as_json):
    """Start a finished TASK again: same software, resource, size, environment and name."""
    client = Client()
    started = client.request("POST", task_path(task, "relaunch"), retry=True)
    report_start(client, started, wait, timeout, as_json)


def report_start(client: Client, task: dict, wait: bool, timeout: float, as_json: bool) -> None:
    if wait:
        task = wait_until_settled(client, task["id"], timeout, progress=not as_json and sys.stderr.isatty())
    if as_json:
        return echo_json(task)
    show_task(task)
    if wait and task["phase"] != "running":
        sys.exit(1)


def progress_line(task: dict) -> str:
    """What a starting task waits for, how long it has, and anything unusual."""
    since = _parse_time(task.get("phase_since"))
    elapsed = (datetime.now(UTC) - since).total_seconds() if since else 0
    limit = task.get("phase_timeout")
    took = clock(elapsed) + (f" of {clock(limit)}" if limit else "")
    line = f"{task['name']}: {task['phase']} · {task.get('waiting_for') or task.get('reason') or ''} · {took}"
    if task.get("warning"):
        line += f" — {task['warning']}"
    return line


def wait_until_settled(client: Client, task_id: str, timeout: float, progress: bool = False) -> dict:
    """Poll until the task runs or ends; on a terminal, one line of progress kept up to date."""
    deadline = time.monotonic() + timeout
    shown = ""
    try:
        while True:
            task = client.request("GET", task_path(task_id), retry=True)
            if progress:
                line = progress_line(task)
                if line != shown:
                    click.echo("\r\033[K" + line, nl=False, err=True)
                    shown = line
            if task["phase"] == "running" or task["phase"] in FINAL_PHASE_NAMES:
                return task
            if time.monotonic() > deadline:
                raise ApiError(0, f"Task {task['name']} is still {task['phase']} after {timeout:g} s.")
            time.sleep(0.2 if not progress else 0.5)
    finally:
        if shown:
            click.echo("", err=True)


@task_group.command("show")
@click.argument("task")
@json_option
def show(task, as_json):
    """Show a task with its events."""
    found = Client().request("GET", task_path(task))
    echo_json(found) if as_json else show_task(found)


@task_group.command("record")
@click.argument("task")
@json_option
def record(task, as_json):
    """What a task ran, as one document (also of a task deleted from the list): `--json` to keep
    it, e.g. for `task start --from`."""
    found = Client().request("GET", task_path(task, "record"))
    if as_json:
        return echo_json(found)
    software, request = found["software"], found["request"]
    lines = [
        ("task", f"{found['task']['name']} ({found['task']['id']}) of {found['task']['owner']}"),
        ("software", f"{software['name']}:{software['version']}  {software['image']}"),
        ("digest", software["digest"] or "(none recorded)"),
        ("resource", f"{found['resource']['name']} ({found['resource']['kind']})"),
        ("size", f"{request['cpus']:g} CPU, {format_memory(request['memory_mb'])}"),
        ("batch", " ".join(f"{k}={v}" for k, v in (("partition", request["partition"]),
                                                    ("time", request["time_limit_minutes"])) if v)),  # fmt: skip
        ("environment", " ".join(f"{name}={value}" for name, value in request["environment"].items())),
        ("storages", ", ".join(f"{s['storage']} at {s['mount_point']}" for s in request["storages"])),
        ("interface", f"{found['interface']['protocol']} on port {found['interface']['port']}"),
        ("times", " → ".join(t or "…" for t in found["times"].values())),
        ("outcome", _outcome_said(found["outcome"])),
        ("rosetta", found["rosetta"]),
    ]  # fmt: skip
    for label, value in lines:
        if value:
            click.echo(f"{label + ':':<13}{value}")


def _outcome_said(outcome: dict) -> str:
    said = outcome["phase"]
    if outcome["exit_code"] is not None:
        said += f", exit code {outcome['exit_code']}"
    return f"{said}: {outcome['reason']}" if outcome["reason"] else said


@task_group.command("logs")
@click.argument("task")
@click.option("--follow", "-f", is_flag=True, help="Wait for output and keep printing it until the task ends.")
@click.option("--tail", type=int, help="Only the last N lines.")
@json_option
def logs(task, follow, tail, as_json):
    """Print a task's output."""
    params = {"follow": str(follow).lower(), **({"tail": tail} if tail is not None else {})}
    chunks = Client().stream(task_path(task, "logs"), **params)
    if as_json:
        return echo_json({"task": task, "logs": b"".join(chunks).decode(errors="replace")})
    for chunk in chunks:
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


yes_option = click.option(
    "--yes", "-y", is_flag=True, help="Do not ask first when its home is scratch space that holds files."
)


def warn_of_losses(client: Client, task: str, verb: str, yes: bool) -> None:
    """What stopping the task would lose: the files in a home that is scratch space (or that
    nobody could look into). A person at a terminal is asked first (unless --yes); a script is
    told on stderr and goes on."""
    warning = client.request("GET", task_path(task, "scratch"), retry=True)["warning"]
    if not warning:
        return
    if yes or not sys.stdin.isatty():
        click.echo(f"Warning: {warning}", err=True)
        return
    click.confirm(f"{warning}\n{verb} {task} anyway?", default=False, abort=True, err=True)


@task_group.command("stop")
@click.argument("task")
@click.option("--reason", default="", help="Why: its owner sees it (staff stopping another user's task must say).")
@yes_option
@json_option
def stop(task, reason, yes, as_json):
    """Stop a task (its container is removed). On a terminal, asks first when its home is
    scratch space holding files."""
    client = Client()
    warn_of_losses(client, task, "Stop", yes)
    stopped = client.request("POST", task_path(task, "stop"), retry=True, json={"reason": reason})
    echo_json(stopped) if as_json else click.echo(f"Stopping {stopped['name']} ({stopped['id']}).")


@task_group.command("delete")
@click.argument("task")
@yes_option
@json_option
def delete(task, yes, as_json):
    """Delete a task, stopping it first if needed (on a terminal, asking first as `stop` does)."""
    client = Client()
    warn_of_losses(client, task, "Delete", yes)
    result = client.request("DELETE", task_path(task))
    echo_json({"task": task, **result}) if as_json else click.echo(result["detail"])
