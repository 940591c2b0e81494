"""The responses the gateway makes itself: small HTML pages, each ending its connection."""

from __future__ import annotations

import html

from rosetta.gateway.policy import Redirect, Refuse, Unavailable

# What browsers should remember of an https front door (the gateway's own pages only: the
# platform sets its own, and a task's responses are relayed untouched).
HSTS = "Strict-Transport-Security: max-age=63072000\r\n"


# Rosetta's look in a few lines, inline: these pages are served on task origins, which load
# nothing from the platform.
_STYLE = (
    "body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','DejaVu Sans',sans-serif;"
    "color:#1d2330;background:#f5f6f8}"
    "header{background:#17202f;padding:0 1.5rem;height:52px;display:flex;align-items:center}"
    "header a{color:#fff;font-weight:700;font-size:1.15rem;text-decoration:none}"
    "main{max-width:460px;margin:3rem auto;padding:1.25rem 1.5rem;background:#fff;border:1px solid #dde1e7;"
    "border-radius:8px;text-align:center;overflow-wrap:anywhere}"
    "@media (max-width:520px){main{margin:1rem}}"
    "h1{font-size:1.4rem;margin:0 0 .5rem}p{margin:.5rem 0}.muted{color:#5f6b7a;font-size:.9rem}"
    ".actions{display:flex;gap:.5rem;justify-content:center;flex-wrap:wrap;margin-top:1rem}"
    ".actions a{display:inline-block;padding:.45rem .95rem;border-radius:6px;border:1px solid #dde1e7;"
    "color:#1d2330;text-decoration:none;font-weight:550}"
    ".actions a:first-child{background:#2457c5;border-color:#2457c5;color:#fff}"
    "a:focus-visible{outline:3px solid #1b449c;outline-offset:2px}"
)


def page(title: str, body_html: str, refresh: bool = False, public_url: str = "", links=()) -> bytes:
    """A page in Rosetta's look; callers escape every interpolated value. ``links``: (href,
    label) pairs, escaped here, the first one the way forward."""
    meta_refresh = '<meta http-equiv="refresh" content="2">' if refresh else ""
    brand = f'<a href="{html.escape(public_url)}/">Rosetta</a>' if public_url else "<a>Rosetta</a>"
    actions = "".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for href, label in links)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta_refresh}<title>{html.escape(title, quote=False)} · Rosetta</title><style>{_STYLE}</style></head>"
        f"<body><header>{brand}</header><main><h1>{html.escape(title, quote=False)}</h1>{body_html}"
        f"{f'<div class=actions>{actions}</div>' if actions else ''}</main></body></html>\n"
    ).encode()


# What a refusal means, said beside the policy's own message.
_EXPLAIN = {
    404: "It may have been deleted, or the address may be mistyped.",
    403: "Each task can be opened by its owner (and by staff) only.",
}


def response(status: int, reason: str, body: bytes, headers: str = "", https: bool = False) -> bytes:
    """A complete response that tells the client the connection ends with it."""
    return (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
        f"{HSTS if https else ''}{headers}\r\n"
    ).encode("latin-1") + body


def refusal(decision: Refuse, https: bool, public_url: str = "") -> bytes:
    text = f"<p>{html.escape(decision.message)}</p>"
    if decision.status in _EXPLAIN:
        text += f'<p class="muted">{_EXPLAIN[decision.status]}</p>'
    links = [decision.link] if decision.link is not None else []
    if public_url and decision.status in _EXPLAIN:
        links.append((f"{public_url}/tasks/", "Your tasks"))
    headers = "".join(f"{name}: {value}\r\n" for name, value in decision.headers)
    body = page(decision.title, text, public_url=public_url, links=links)
    return response(decision.status, decision.reason, body, headers, https)


def redirect(decision: Redirect, https: bool) -> bytes:
    body = page("Opening task", f'<p><a href="{html.escape(decision.location)}">Open this task from Rosetta</a></p>')
    return response(302, "Found", body, f"Location: {decision.location}\r\n", https)


def signed_in(set_cookie: str, location: str, https: bool) -> bytes:
    body = page("Signed in", f'<p><a href="{html.escape(location)}">Continue</a></p>')
    return response(303, "See Other", body, f"Set-Cookie: {set_cookie}\r\nLocation: {location}\r\n", https)


def unavailable(decision: Unavailable, public_url: str, https: bool) -> bytes:
    """The page shown while a task has nothing to forward to: never a bare 502."""
    route = decision.route
    name, phase = html.escape(route.name), html.escape(route.phase)
    links = [
        (f"{public_url}/tasks/{route.task_id}/", "See the task in Rosetta"),
        (f"{public_url}/tasks/", "Your tasks"),
    ]
    title = f"{route.name} is {route.phase}"
    if route.is_final:
        text = (
            f"<p>The task “{name}” has {phase}: it has no interface any more, and will not come back.</p>"
            '<p class="muted">Its page in Rosetta says why it ended, keeps its output, and can relaunch it.</p>'
        )
        body = page(title, text, public_url=public_url, links=links)
        return response(503, "Service Unavailable", body, https=https)
    if decision.reason:
        text = (
            f"<p>The task “{name}” cannot be reached now: {html.escape(decision.reason)}</p>"
            '<p class="muted">This page reloads by itself and shows the task as soon as it can be reached.</p>'
        )
        body = page(f"{route.name} cannot be reached", text, refresh=True, public_url=public_url, links=links)
        return response(503, "Service Unavailable", body, "Retry-After: 5\r\n", https)
    text = (
        f"<p>The task “{name}” is {phase}: its interface is not answering yet.</p>"
        '<p class="muted">This page reloads by itself and shows the task as soon as it answers. '
        "Its page in Rosetta shows what it is waiting for.</p>"
    )
    body = page(title, text, refresh=True, public_url=public_url, links=links)
    return response(503, "Service Unavailable", body, "Retry-After: 2\r\n", https)


def platform_starting(https: bool) -> bytes:
    body = page(
        "Rosetta is starting", "<p>Rosetta is not answering yet; this page reloads by itself.</p>", refresh=True
    )
    return response(503, "Service Unavailable", body, "Retry-After: 2\r\n", https)
