"""Whether task origins are same-site with the platform.

A task's web app is code its user chose. When its origin (``<id>.<tasks domain>``) shares a
registrable domain with the platform's host, browsers treat the two as one site: the app can
set ``Domain=`` cookies the platform receives (swapping a visitor's session for another
account's) and its pages' requests to the platform count as same-site. Task origins therefore
belong on a registrable domain of their own (platform ``rosetta.example.org``, tasks
``*.example-tasks.org``), as code-hosting sites serve user content.

Registrable domains come from the Public Suffix List bundled with ``publicsuffixlist`` (read
from the installed package; nothing is fetched at run time). Names under a top-level domain
the list does not know (``.corp``, a single-label intranet host) count as one site, since
browsers differ on them.
"""

from __future__ import annotations

import ipaddress
from functools import cache
from itertools import takewhile

from publicsuffixlist import PublicSuffixList

# localhost names resolve to this machine only: the platform and its tasks are then used by
# whoever operates this machine, and no one else's browser can be sent to them.
LOCAL_NAMES = ("localhost",)


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False)


def is_local(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == name or host.endswith("." + name) for name in LOCAL_NAMES)


def same_site(public_host: str, tasks_domain: str) -> bool:
    """Whether a task origin ``<id>.<tasks_domain>`` and ``public_host`` share a registrable
    domain, i.e. their longest common parent domain is not a public suffix."""
    public_host, tasks_domain = public_host.lower().rstrip("."), tasks_domain.lower().rstrip(".")
    if _is_ip(public_host):
        return False  # an IP address has no parent domain a cookie or a site could span
    pairs = zip(reversed(public_host.split(".")), reversed(f"task.{tasks_domain}".split(".")), strict=False)
    shared = [label for label, other in takewhile(lambda pair: pair[0] == pair[1], pairs)]
    return bool(shared) and not _suffixes().is_public(".".join(reversed(shared)))


def same_site_problem(public_host: str, tasks_domain: str) -> str | None:
    """What is wrong with serving tasks at ``*.<tasks_domain>`` beside ``public_host``, if anything."""
    if is_local(public_host) or not same_site(public_host, tasks_domain):
        return None
    return (
        f"Task origins *.{tasks_domain} are same-site with the platform's host {public_host}: a task's web app "
        "could set cookies the platform reads and send it requests as the same site."
    )


SAME_SITE_FIX = (
    "Serve tasks from a registrable domain of their own (e.g. ROSETTA_TASKS_DOMAIN=example-tasks.org, with a "
    "wildcard DNS record and certificate for it), or accept the risk with ROSETTA_ALLOW_SAME_SITE_TASKS=1."
)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
