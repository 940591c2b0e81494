"""The responses the gateway makes itself: small HTML pages, each ending its connection."""

from __future__ import annotations

import html

from rosetta.gateway.policy import Redirect, Refuse, Unavailable

# What browsers should remember of an https front door (the gateway's own pages only: the
# platform sets its own, and a task's responses are relayed untouched).
HSTS = "Strict-Transport-Security: max-age=63072000\r\n"


def page(title: str, body_html: str, refresh: bool = False) -> bytes:
    """A minimal page; callers escape every interpolated value."""
    meta_refresh = '<meta http-equiv="refresh" content="2">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"{meta_refresh}<title>{html.escape(title, quote=False)} · Rosetta</title></head>"
        f"<body><h1>{html.escape(title, quote=False)}</h1>{body_html}</body></html>\n"
    ).encode()


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


def refusal(decision: Refuse, https: bool) -> bytes:
    text = f"<p>{html.escape(decision.message)}"
    if decision.link is not None:
        href, label = decision.link
        text += f' <a href="{html.escape(href)}">{html.escape(label)}</a>'
    headers = "".join(f"{name}: {value}\r\n" for name, value in decision.headers)
    return response(decision.status, decision.reason, page(decision.title, text + "</p>"), headers, https)


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
    if route.is_final:
        link = html.escape(f"{public_url}/tasks/{route.task_id}")
        text = (
            f"<p>The task “{name}” has {phase}; this phase is final, it will not come back.</p>"
            f'<p><a href="{link}">See the task in Rosetta</a></p>'
        )
        return response(503, "Service Unavailable", page(f"{route.name} is {route.phase}", text), https=https)
    text = f"<p>The task “{name}” is {phase}. Its interface is not answering yet; this page reloads by itself.</p>"
    body = page(f"{route.name} is {route.phase}", text, refresh=True)
    return response(503, "Service Unavailable", body, "Retry-After: 2\r\n", https)


def platform_starting(https: bool) -> bytes:
    body = page(
        "Rosetta is starting", "<p>Rosetta is not answering yet; this page reloads by itself.</p>", refresh=True
    )
    return response(503, "Service Unavailable", body, "Retry-After: 2\r\n", https)
