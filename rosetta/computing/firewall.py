"""The boundary around tasks on this machine, as packet-filter rules.

Each local task has a network of its own (podman, rootful), drawn from one address pool.
The rules say: a task reaches no other task and nothing on this machine but the platform's
public port; it reaches no link-local address (cloud metadata services live there); tasks
whose resource allows no outbound access reach nothing beyond this machine either; and of
this machine's accounts only the platform's may open a connection to a task; and no packet for
the task pool leaves this machine (an unreachable route under the networks' own). Podman's own
rules (netavark's) then forward and masquerade what is left.

The rules are IPv4's alone because task networks carry no IPv6: an interface whose MTU is below
IPv6's minimum (1280 bytes) never gets an IPv6 address, not even a link-local one, and task
networks have such an MTU (``NETWORK_MTU``; netavark creates the bridge and both ends of each
task's link with it), so none of them has IPv6 at any moment. Otherwise each end gets an
``fe80::`` address, through which a task reaches this machine's services and other accounts the
task (podman 4.3 cannot name bridges, so ip6tables rules could not pick out task networks). A
task cannot raise its MTU (no NET_ADMIN); its loopback keeps ``::1``.

The rules are argv lists for iptables, computed here and applied by the local backend
(rosetta.computing.schedulers.direct) before it starts any task; applying them again is
harmless. They stay in place when the platform stops: the tasks outlive it too.
"""

from __future__ import annotations

import ipaddress
import os

from rosetta.computing.errors import Refused

TASK_SUBNETS = ipaddress.ip_network(os.environ.get("ROSETTA_TASK_SUBNETS", "10.123.0.0/16"))
OPEN_POOL, CLOSED_POOL = (str(half) for half in TASK_SUBNETS.subnets(prefixlen_diff=1))
NETWORK_PREFIX = 28  # one task, one network: the bridge's address and the container's fit in a /28
NETWORK_MTU = 1279  # below IPv6's minimum: no IPv6 on task networks at all (see above)
LINK_LOCAL = "169.254.0.0/16"

INPUT_CHAIN = "ROSETTA-TASKS-IN"  # packets from tasks to this machine
FORWARD_CHAIN = "ROSETTA-TASKS-FWD"  # packets from tasks to anywhere else
OUTPUT_CHAIN = "ROSETTA-TASKS-OUT"  # packets from this machine's accounts to tasks
# The mangle table: its chains see every packet before the filter table's, where podman's
# rules accept task traffic and may put themselves first at any time.
TABLE = "mangle"


def chains() -> tuple[str, ...]:
    return INPUT_CHAIN, FORWARD_CHAIN, OUTPUT_CHAIN


def rules(platform_uid: int, public_port: int | None) -> list[list[str]]:
    """The rules of our chains, as iptables arguments after the table (``-A CHAIN ...``)."""
    tasks = str(TASK_SUBNETS)
    # Replies to what the platform opened come back in; a task opens nothing here...
    rules = [["-A", INPUT_CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"]]
    if public_port is not None:  # ...but the public front door, like any client.
        rules.append(["-A", INPUT_CHAIN, "-p", "tcp", "--dport", str(public_port), "-j", "RETURN"])
    rules += [
        ["-A", INPUT_CHAIN, "-j", "DROP"],
        ["-A", FORWARD_CHAIN, "-d", tasks, "-j", "DROP"],  # another task
        ["-A", FORWARD_CHAIN, "-d", LINK_LOCAL, "-j", "DROP"],  # metadata services and the like
        ["-A", FORWARD_CHAIN, "-s", CLOSED_POOL, "-j", "DROP"],  # no outbound access at all
        ["-A", OUTPUT_CHAIN, "-m", "owner", "!", "--uid-owner", str(platform_uid), "-j", "DROP"],
    ]
    return rules


def restore_input(platform_uid: int, public_port: int | None) -> bytes:
    """What ``iptables-restore --noflush`` reads to replace our chains' rules in one step: a
    chain it names is emptied and refilled atomically, so there is never a moment when the
    boundary is down (rules are applied again now and then, and by every platform here)."""
    lines = [f"*{TABLE}", *(f":{chain} - [0:0]" for chain in chains())]
    lines += [" ".join(rule) for rule in rules(platform_uid, public_port)]
    return ("\n".join([*lines, "COMMIT"]) + "\n").encode()


RESTORE = ["iptables-restore", "-w", "--noflush"]


def jumps() -> list[tuple[str, list[str]]]:
    """(built-in chain, the rule that sends it to ours): checked with -C, put first with -I."""
    tasks = str(TASK_SUBNETS)
    return [
        ("INPUT", ["-s", tasks, "-j", INPUT_CHAIN]),
        ("FORWARD", ["-s", tasks, "-j", FORWARD_CHAIN]),
        ("OUTPUT", ["-d", tasks, "-j", OUTPUT_CHAIN]),
    ]


def pool_route() -> list[str]:
    """The task pool is unreachable except through a live task network's bridge (a more
    specific route): a connection to the address of a task whose network is gone fails here at
    once, instead of leaving this machine by the default route."""
    return ["ip", "route", "replace", "unreachable", str(TASK_SUBNETS)]


def _iptables(*args: str) -> list[str]:
    return ["iptables", "-w", "-t", TABLE, *args]


def check_jump(builtin: str, rule: list[str]) -> list[str]:
    return _iptables("-C", builtin, *rule)


def insert_jump(builtin: str, rule: list[str]) -> list[str]:
    return _iptables("-I", builtin, "1", *rule)


async def apply(transport, platform_uid: int, public_port: int | None) -> None:
    """Put the boundary in place through ``transport`` (this machine's); safe to repeat."""
    _must(await transport.run(pool_route(), timeout=30))
    _must(await transport.run(RESTORE, timeout=30, stdin=restore_input(platform_uid, public_port)))
    for builtin, rule in jumps():
        if not (await transport.run(check_jump(builtin, rule), timeout=30)).ok:
            _must(await transport.run(insert_jump(builtin, rule), timeout=30))


def _must(result) -> None:
    if not result.ok:
        raise Refused("Tasks cannot be isolated on this machine, so none is started.", result.error_text())
