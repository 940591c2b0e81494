"""Who may do what on which route: the gateway's access policy, as pure functions.

The relay (``relay.py``) turns a request head into a ``RequestHead`` — the facts that matter
here: method, target, the task its Host names, its Origin, the users its credentials prove
(access cookies already checked for signature and expiry, an API token already looked up) —
and asks ``decide`` what to do. The answer is a decision: forward (with the credential that
reaches the upstream: the task's secret, the client's own Authorization, or nothing), refuse with a page,
redirect to the platform, collect the login form, or wait for a fresher route table. The
relay then only moves bytes. Nothing here touches a socket, a clock or the database, so the
whole policy reads in one place and is table-tested on its own.
"""

from __future__ import annotations

import urllib.parse
from typing import NamedTuple

from rosetta.accounts.tokens import TOKEN_PREFIX
from rosetta.gateway.access import LOGIN_PATH, OneTimeToken, safe_next_path
from rosetta.gateway.routes import Route, RouteTable

_LOGIN_TARGET = LOGIN_PATH.encode()
_PLATFORM_TOKEN = b" " + TOKEN_PREFIX.encode()  # as it follows "Bearer" in an Authorization line
_STORAGES = b"/api/storages/"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Site:
    """What the policy knows of the deployment: where the platform is, where tasks are."""

    def __init__(self, public_url: str, tasks_domain: str, max_platform_body: int = 64 * 1024 * 1024) -> None:
        public = urllib.parse.urlsplit(public_url)
        port = "" if public.port in (None, _DEFAULT_PORTS.get(public.scheme)) else f":{public.port}"
        host = public.hostname or ""
        host = f"[{host}]" if ":" in host else host
        self.public_url = public_url.rstrip("/")
        self.tasks_domain = tasks_domain.lower().rstrip(".")
        self.max_platform_body = max_platform_body
        # Origins as browsers send them: lower case, no default port.
        self.public_origin = f"{public.scheme}://{host}{port}".lower().encode()
        self._task_origin_prefix = f"{public.scheme}://".encode()
        self._task_origin_suffix = f".{self.tasks_domain}{port}".lower().encode()

    def task_origin(self, task_id: str) -> bytes:
        return self._task_origin_prefix + task_id.encode() + self._task_origin_suffix


class RequestHead(NamedTuple):
    method: bytes
    target: bytes  # path and query, as sent
    task_id: str | None  # None: the Host is the platform's
    origin: bytes | None  # the Origin header, if any
    cookie_users: tuple[tuple[int, int], ...]  # (user, epoch) of each valid access cookie for this task
    bearer_user: int | None  # the user of a Rosetta API token sent as Authorization: Bearer
    upgrade: bool  # asks to switch protocols (WebSocket)
    content_length: int | None
    accepts_html: bool  # a browser navigating, rather than a script
    arrived: float  # when the head began to arrive (the gateway's clock)
    table_read_at: float  # when the route table's database read began (same clock)
    access_may_have_changed: bool  # someone's access was taken away since the table was read
    may_wait: bool = True  # False once the request has waited for a fresher table
    authorization: bytes = b""  # the client's Authorization header lines, but a platform API token
    api_token_line: bytes = b""  # the client's Authorization line holding a platform API token, if any
    bearer_staff: bool = False  # that token may use staff powers (a staff member's, with the admin scope)


class Forward(NamedTuple):
    """Send the request on, with ``credential`` (Authorization header lines, or b"") in place of
    whatever the client sent: ``decide`` chooses it."""

    route: Route | None  # None: the platform
    credential: bytes = b""


class Unavailable(NamedTuple):
    """The task has nothing to forward to yet (or any more): a page with its phase."""

    route: Route
    reason: str = ""  # why it cannot be reached, when the gateway tried (the resource does not answer)


class Refuse(NamedTuple):
    status: int
    reason: str
    title: str
    message: str
    link: tuple[str, str] | None = None  # (href, text) shown after the message
    headers: tuple[tuple[str, str], ...] = ()


class Redirect(NamedTuple):
    location: str


class Login(NamedTuple):
    """Collect the hand-over form posted to ``LOGIN_PATH``; ``complete_login`` judges it."""

    route: Route


class Grant(NamedTuple):
    """Set the access cookie for ``user_id`` in ``epoch`` and send the browser to ``location``."""

    user_id: int
    epoch: int
    location: str


class Defer(NamedTuple):
    """Ask again once the route table was read after the request arrived (or a moment passed):
    the database may already know the task, or that an access was taken away."""


DEFER = Defer()
FORWARD_TO_PLATFORM = Forward(None)
# A NamedTuple made without its Python-level __new__ (its fields given in order): for the
# decisions of every request.
_new_decision = tuple.__new__
Decision = Forward | Unavailable | Refuse | Redirect | Login | Grant | Defer


def decide(head: RequestHead, table: RouteTable, site: Site) -> Decision:
    # Every request comes here: its facts are unpacked at once (cheaper than reading them one by
    # one), and the common case (a task that runs, a valid cookie) meets the fewest checks.
    (
        method,
        target,
        task_id,
        origin,
        cookie_users,
        bearer_user,
        upgrade,
        content_length,
        accepts_html,
        arrived,
        table_read_at,
        access_may_have_changed,
        may_wait,
        authorization,
        api_token_line,
        bearer_staff,
    ) = head
    if task_id is None:
        if content_length is not None and content_length > site.max_platform_body and not unlimited(method, target):
            return too_large(site)
        if authorization or api_token_line:  # the platform checks them itself
            return _new_decision(Forward, (None, authorization + api_token_line))
        return FORWARD_TO_PLATFORM
    route = table.routes.get(task_id)
    # Wait for a fresher table when the answer may be stale: the credentials revoked meanwhile,
    # or "no such task" / "not ready" for a task just created or just started.
    if may_wait and (
        access_may_have_changed
        or ((route is None or (route.upstream is None and not route.is_final)) and table_read_at < arrived)
    ):
        return DEFER
    if route is None:
        return Refuse(404, "Not Found", "No such task", f"There is no task “{task_id}” here.")
    if target.startswith(_LOGIN_TARGET) and target[len(_LOGIN_TARGET) : len(_LOGIN_TARGET) + 1] in (b"", b"?"):
        return _login(head, route, site)
    if upgrade and not _upgrade_comes_from_the_task(head, site):
        return Refuse(
            403, "Forbidden", "Not allowed", "A WebSocket to this task must be opened by the task's own pages."
        )
    allowed = identified = False
    for user_id, epoch in cookie_users:
        if table.epochs.get(user_id) == epoch:  # else logged out since, or deactivated
            identified = True
            if table.may_access(user_id, route):
                allowed = True
                break
    if not allowed and bearer_user is not None:
        identified = True
        allowed = table.may_access_by_token(bearer_user, bearer_staff, route)
    if allowed:
        if route.upstream is None:
            return Unavailable(route)
        # Which credential reaches the task: its own secret, for software the platform signs in
        # (``route.authorization``), whatever the client sent; else the client's own Authorization,
        # for software with its own login — but never a platform API token that proved who sent it
        # (the task could act as its visitor on the platform).
        credential = route.authorization
        if credential is None:
            # A platform token the table does not know (revoked, or not made to use tasks) stays out too.
            platform_token = bearer_user is not None or _PLATFORM_TOKEN in api_token_line
            credential = authorization if platform_token else authorization + api_token_line
        return _new_decision(Forward, (route, credential))
    if identified:
        return Refuse(403, "Forbidden", "Not allowed", f"You may not open the task “{route.name}”.")
    if method == b"GET" and accepts_html:
        return Redirect(_open_from_platform(site, task_id, target))
    return Refuse(
        401,
        "Unauthorized",
        "Authentication required",
        "Open this task from Rosetta, or send an API token.",
        headers=(("WWW-Authenticate", "Bearer"),),
    )


def complete_login(
    token: OneTimeToken | None, task_id: str, route: Route, table: RouteTable, next_path: str, site: Site
) -> Grant | Refuse:
    """The answer to a hand-over form: ``token`` is None unless its signature held, it had not
    expired and this was its first use."""
    if token is None or table.epochs.get(token.user_id) != token.epoch:
        return Refuse(
            403,
            "Forbidden",
            "Link expired",
            "This link has expired or was already used; open the task again from Rosetta.",
            link=(f"{site.public_url}/tasks/{urllib.parse.quote(task_id)}", "Back to the task"),
        )
    if not table.may_access(token.user_id, route):
        return Refuse(403, "Forbidden", "Not allowed", f"You may not open the task “{route.name}”.")
    return Grant(token.user_id, token.epoch, safe_next_path(next_path))


def unlimited(method: bytes, target: bytes) -> bool:
    """Uploads to storages may be as large as the storage: the platform streams them to it."""
    return method == b"PUT" and target.startswith(_STORAGES)


def too_large(site: Site) -> Refuse:
    limit = site.max_platform_body // (1024 * 1024)
    return Refuse(413, "Content Too Large", "Request too large", f"Rosetta accepts requests of up to {limit} MiB.")


def _login(head: RequestHead, route: Route, site: Site) -> Login | Refuse:
    if head.method != b"POST" or head.upgrade:
        return Refuse(
            405,
            "Method Not Allowed",
            "Method not allowed",
            "Sign in by opening the task from Rosetta.",
            headers=(("Allow", "POST"),),
        )
    # The hand-over form is the platform's page; from anywhere else it would be login CSRF
    # (a page signing the visitor in to a task of the attacker's).
    if head.origin is None or head.origin.lower() != site.public_origin:
        return Refuse(403, "Forbidden", "Not allowed", "Sign in by opening the task from Rosetta.")
    return Login(route)


def _upgrade_comes_from_the_task(head: RequestHead, site: Site) -> bool:
    """Browsers send Origin with every WebSocket handshake, and cookies with it whatever the
    origin: only the task's own pages may use them. A handshake without Origin is not a
    browser's; it is let through only with an API token (which no page can make a browser send)."""
    if head.origin is None:
        return head.bearer_user is not None
    return head.origin.lower() == site.task_origin(head.task_id)


def _open_from_platform(site: Site, task_id: str, target: bytes) -> str:
    next_path = urllib.parse.quote(target.decode("latin-1"), safe="")
    return f"{site.public_url}/tasks/{urllib.parse.quote(task_id)}/open?next={next_path}"
