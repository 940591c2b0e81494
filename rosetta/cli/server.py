"""Operator commands: run the platform's processes, manage users, set up a demo."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import click

from rosetta.cli.django_setup import configure_logging, setup_django
from rosetta.core.paths import PROJECT_ROOT, run_dir

log = logging.getLogger("rosetta")


def web_socket_path() -> Path:
    return run_dir() / "web.sock"


@click.command("web")
@click.option(
    "--socket", "socket_path", type=click.Path(), help="Unix socket to listen on (default: the run directory's)."
)
@click.option("--port", type=int, help="Listen on 127.0.0.1:PORT instead of a unix socket.")
def web(socket_path, port):
    """Serve the web UI and REST API (normally behind the gateway)."""
    import uvicorn

    setup_django()
    _check_public_setup()
    _check_id_region()
    if port:
        # Any local process can connect to a port and claim any address in X-Forwarded-For.
        options = {"port": port, "host": "127.0.0.1", "proxy_headers": False}
    else:
        # Only the platform's account can connect to the socket: what comes through it is the
        # gateway, whose X-Forwarded-For names the client (login limits count by it).
        listener = _private_unix_socket(Path(socket_path) if socket_path else web_socket_path())
        options = {"fd": listener.fileno(), "proxy_headers": True, "forwarded_allow_ips": "*"}
    from rosetta.storage.streaming import larger_body_reads
    from rosetta.storage.sweep import sweep_now_and_then

    larger_body_reads()
    sweep_now_and_then()  # what uploads cut short by a dead web process left behind
    uvicorn.run("rosetta.asgi:application", log_level="warning", lifespan="off", **options)


def _private_unix_socket(path: Path) -> socket.socket:
    """A listening socket at ``path`` that only this account can connect to. Bound here, not by
    uvicorn, which would make it connectable by every account (mode 0666)."""
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    path.chmod(0o600)
    return listener


def _check_public_setup() -> None:
    """Refuse to serve task origins that are same-site with the platform (rosetta.core.sites)."""
    from urllib.parse import urlsplit

    from django.conf import settings

    from rosetta.core.sites import SAME_SITE_FIX, same_site_problem

    problem = same_site_problem(urlsplit(settings.PUBLIC_URL).hostname or "", settings.TASKS_DOMAIN)
    if problem and not settings.ALLOW_SAME_SITE_TASKS:
        raise click.ClickException(f"{problem} {SAME_SITE_FIX}")
    if problem:
        log.warning("%s Accepted because ROSETTA_ALLOW_SAME_SITE_TASKS=1.", problem)


def _check_id_region() -> None:
    """Refuse a region of host ids for users' files that overlaps other ids (rosetta.storage.ids);
    as another account than root the platform uses none."""
    if os.geteuid() != 0:
        return
    from django.conf import settings

    from rosetta.storage import ids

    subordinates = ids.read_subordinate_ids()
    problems = ids.region_problems(subordinates)
    if problems:
        raise click.ClickException(" ".join(problems))
    if not ids.reserved(subordinates):
        log.warning(
            "Host ids %d-%d (users' files) are not reserved as %r in /etc/subuid and /etc/subgid: an account "
            "made later could be given some of them (scripts/setup.sh reserves them).",
            settings.STORAGE_ID_BASE, settings.STORAGE_ID_BASE + settings.STORAGE_ID_COUNT - 1, ids.RESERVATION,
        )  # fmt: skip


@click.command("controller")
def controller():
    """Run the controller that starts, watches and stops task containers."""
    setup_django()
    _check_id_region()
    from rosetta.core.processes import use_pidfd_watcher
    from rosetta.tasks.controller import Controller

    async def control() -> None:
        use_pidfd_watcher()
        await Controller().run_forever()

    # Not uvloop: under it, the pipes of `podman run -d` stay open in the daemonised conmon
    # and reading the container id never ends.
    _run_async(control(), fast_loop=False)


@click.command("gateway")
@click.option(
    "--host", default="localhost", show_default=True, help="Address to listen on ('localhost' = 127.0.0.1 and ::1)."
)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Processes sharing the port (SO_REUSEPORT).")
@click.option("--platform", "platform_upstream", help="Where the web UI listens: a unix socket path or HOST:PORT.")
@click.option("--listen-fds", help="Listening sockets inherited from `rosetta run` (descriptors, grouped per worker).")
def gateway(host, port, workers, platform_upstream, listen_fds):
    """Run the gateway: the front door for the platform and every task's origin.

    SIGTERM: stop accepting, let open connections (WebSockets) finish, then exit. SIGINT: exit now."""
    setup_django()
    from django.conf import settings

    from rosetta.cli.supervisor import report_ready
    from rosetta.core.database import fresh_connection
    from rosetta.core.notify import shared_database
    from rosetta.gateway.access import access_key
    from rosetta.gateway.proxy import GatewayConfig, inherited_sockets, run_gateway
    from rosetta.gateway.snapshot import load_route_table

    config = GatewayConfig(
        listen=[(host, port)],
        tasks_domain=settings.TASKS_DOMAIN,
        platform_upstream=_parse_upstream(platform_upstream) if platform_upstream else str(web_socket_path()),
        public_url=settings.PUBLIC_URL,
        key=access_key(settings.SECRET_KEY),
        used_tokens=run_dir() / "used-access-tokens.sqlite3",
        used_tokens_in_database=shared_database(),  # PostgreSQL: gateways may run on several machines
        workers=workers,
        trusted_proxies=tuple(settings.TRUSTED_PROXIES),
    )
    sockets = inherited_sockets([int(fd) for fd in listen_fds.split(",")], workers) if listen_fds else None
    configure_logging()
    try:
        sys.exit(run_gateway(config, fresh_connection(load_route_table), sockets=sockets, ready=report_ready))
    except OSError as error:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from None


@click.command("ssh-door")
@click.option(
    "--host", default="localhost", show_default=True, help="Address to listen on ('localhost' = 127.0.0.1 and ::1)."
)
@click.option("--port", type=int, help="Port to listen on (default: ROSETTA_SSH_PORT).")
@click.option("--listen-fds", help="Listening sockets inherited from `rosetta run` (descriptors).")
def ssh_door(host, port, listen_fds):
    """Run the SSH front door: a jump host to users' own SSH tasks, for their registered keys.

    SIGTERM: stop accepting, let open sessions go on (up to 10 minutes), then exit. SIGINT: exit now."""
    setup_django()
    from django.core.exceptions import ImproperlyConfigured

    from rosetta.cli.supervisor import report_ready
    from rosetta.gateway.proxy import listening_sockets
    from rosetta.gateway.ssh_access import door_address, door_port, host_key, host_port
    from rosetta.gateway.ssh_door import DoorConfig, run_door

    try:
        address, port = door_address(), port or door_port()
    except ImproperlyConfigured as error:
        raise click.ClickException(str(error)) from None
    if port is None or address is None:
        raise click.ClickException("The SSH front door is off (ROSETTA_SSH_PORT=off).")
    config = DoorConfig(host_key=host_key(), address=host_port(*address))
    configure_logging()
    if listen_fds:
        sockets = [socket.socket(fileno=int(fd)) for fd in listen_fds.split(",")]
    else:
        try:
            sockets = listening_sockets([(host, port)])[0]
        except OSError as error:
            raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from None
    sys.exit(run_door(config, sockets, ready=report_ready))


def _door_sockets(hosts: tuple[str, ...]) -> list[socket.socket]:
    """The SSH front door's listening sockets, held by `rosetta run` like the gateway's (none when it is off)."""
    from django.core.exceptions import ImproperlyConfigured

    from rosetta.gateway.proxy import listening_sockets
    from rosetta.gateway.ssh_access import door_port, host_key

    try:
        port = door_port()
    except ImproperlyConfigured as error:
        raise click.ClickException(str(error)) from None
    if port is None:
        return []
    host_key()  # made here, once, before any process may race for it
    try:
        return _listen_once_free(lambda: listening_sockets([(host, port) for host in hosts])[0])
    except OSError as error:
        raise click.ClickException(
            f"Cannot listen on {', '.join(hosts)} port {port} for the SSH front door: {error.strerror or error} "
            "(ROSETTA_SSH_PORT chooses another port; 'off' runs none)."
        ) from None


def _parse_upstream(text: str) -> tuple[str, int] | str:
    host, sep, port = text.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else text


def _run_async(coroutine, fast_loop: bool = True) -> None:
    configure_logging()
    import uvloop

    try:
        (uvloop.run if fast_loop else asyncio.run)(coroutine)
    except KeyboardInterrupt:
        pass


PORT_FREED_WITHIN = 10.0  # seconds the children of a supervisor that died take to let go of its ports


def _claim_home() -> int:
    """One `rosetta run` per home: a second says which one runs, and stops."""
    from rosetta.cli.supervisor import AlreadyRunning, claim
    from rosetta.core.paths import home

    try:
        return claim(run_dir() / "supervisor.lock")
    except AlreadyRunning as running:
        raise click.ClickException(
            f"Rosetta is already running for {home()} (`rosetta run`, pid {running.pid}); "
            f"stop it first (kill {running.pid}), or set ROSETTA_HOME to run another platform."
        ) from None


def _listen_once_free(listen):
    """Listening sockets, waiting a little for a port held by the children of a supervisor that
    died (they got SIGTERM with it: a gateway lets go of its sockets as it starts to drain)."""
    import errno
    import time

    deadline = time.monotonic() + PORT_FREED_WITHIN
    while True:
        try:
            return listen()
        except OSError as error:
            if error.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@click.command("run")
@click.option("--host", default="localhost", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--gateway-workers", type=int, default=1, show_default=True)
@click.option(
    "--ssh-host",
    "ssh_hosts",
    multiple=True,
    help="Address the SSH front door listens on (repeatable; default: --host). Behind a TLS terminator the "
    "gateway stays on loopback while the door faces users.",
)
def run(host, port, gateway_workers, ssh_hosts):
    """Run web + API, controller, gateway and SSH front door together (each restarted if it dies)."""
    from rosetta.cli.registry import registry_commands
    from rosetta.cli.supervisor import Supervisor

    _claim_home()  # its descriptor stays open, the claim held, until this process ends
    public_host = "localhost" if host in ("localhost", "0.0.0.0", "::") else host
    public = os.environ.setdefault("ROSETTA_PUBLIC_URL", f"http://{public_host}:{port}")
    setup_django()
    _check_public_setup()
    _check_id_region()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)  # an upgraded checkout just works
    from rosetta.gateway.proxy import listening_sockets

    try:  # held here for every gateway to come: restarting one refuses no connection
        sockets = _listen_once_free(lambda: listening_sockets([(host, port)], gateway_workers))
    except OSError as error:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from None
    fds = [sock.fileno() for group in sockets for sock in group]
    door_sockets = _door_sockets(ssh_hosts or (host,))  # held here too, for every door to come
    door_fds = [sock.fileno() for sock in door_sockets]
    me = [sys.executable, "-m", "rosetta.cli.main"]
    gateway_command = [*me, "gateway", "--host", host, "--port", str(port), "--workers", str(gateway_workers)]
    door = {"ssh-door": [*me, "ssh-door", "--listen-fds", ",".join(map(str, door_fds))]} if door_fds else {}
    supervisor = Supervisor(
        {
            "web": [*me, "web"],
            "controller": [*me, "controller"],
            "gateway": [*gateway_command, "--listen-fds", ",".join(map(str, fds))],
            **door,
            "builder": [*me, "builder"],  # users' Containerfiles (rosetta.catalog.builder)
            **registry_commands(me),
        },
        pass_fds={"gateway": fds, "ssh-door": door_fds},
        graceful=frozenset({"gateway", *door}),
    )
    replaced = "the gateway and the SSH door" if door else "the gateway"
    click.echo(f"Rosetta is starting at {public}  (Ctrl-C stops it, SIGHUP replaces {replaced})")
    if door_fds:
        from rosetta.gateway.ssh_access import door_info

        info = door_info()
        click.echo(f"SSH front door on port {info.port}, host key {info.fingerprint}")
    sys.exit(supervisor.run())


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
