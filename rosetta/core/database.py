"""Database access from the platform's long-running processes (controller, gateway, SSH door).

Django drops broken connections at the start and end of each web request; a process that
serves no requests must do it itself, or after a database restart every later query fails on
the connection the server closed, until someone restarts the process. Only a connection an
error left unusable is dropped: a healthy one is kept (the settings' CONN_MAX_AGE of 0 is for
web requests; a controller reconnecting for every query would pay for it in every pass).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


def fresh_connection(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, run on a usable connection: one an earlier error left unusable (the server
    restarted, the network dropped) is closed first, and the next query opens a new one."""

    @functools.wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        drop_broken_connections()
        return function(*args, **kwargs)

    return call


def drop_broken_connections() -> None:
    """Close this thread's connections on which an error occurred and that no longer work."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or not connection.errors_occurred:
            continue
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


def db(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run ORM work in Django's one sync thread, off the event loop, on a usable connection."""
    return sync_to_async(fresh_connection(function))


def connect_kwargs() -> dict:
    """How to open a PostgreSQL connection of one's own to the platform's database (for locks
    and LISTEN, which must outlive the ORM's connections): psycopg's keyword arguments."""
    params = connections["default"].get_connection_params()
    wanted = ("dbname", "user", "password", "host", "port")
    return {key: value for key, value in params.items() if key in wanted and value}
