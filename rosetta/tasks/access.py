"""Who reaches a task's interface: one rule for the HTTP gateway, its WebSockets and the SSH door.

A task's interface (its web app, its desktop, its sshd) is reached by its owner and by staff,
who look after every task of the platform. Nobody else: another user's task reads as a missing
one wherever ids could be probed. When tasks can be shared, "shared with you" joins here, and
every door follows. docs/access.md says the rule for people.
"""

from __future__ import annotations


def may_reach(user_id: int, owner_id: int, staff: bool) -> bool:
    """Whether the active user ``user_id`` (``staff``: one of the platform's staff) may reach the
    interface of a task that ``owner_id`` owns."""
    return user_id == owner_id or staff
