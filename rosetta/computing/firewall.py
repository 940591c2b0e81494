"""The boundary around tasks on this machine, as packet-filter rules.

Each local task has a network of its own (podman, rootful), drawn from one address pool.
The rules say: a task reaches no other task and nothing on this machine but the platform's
public port; it reaches no link-local address (cloud metadata services live there); tasks
whose resource allows no outbound access reach nothing beyond this machine either; and of
this machine's accounts only the platform's may open a connection to a task. Podman's own
rules (netavark's) then forward and masquerade what is left.

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
    """The commands that fill our chains, flushed first: applying them again is harmless."""
    tasks = str(TASK_SUBNETS)
    commands = [_iptables("-F", chain) for chain in chains()]
    # Replies to what the platform opened come back in; a task opens nothing here...
    commands.append(_iptables("-A", INPUT_CHAIN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"))
    if public_port is not None:  # ...but the public front door, like any client.
        commands.append(_iptables("-A", INPUT_CHAIN, "-p", "tcp", "--dport", str(public_port), "-j", "RETURN"))
    commands += [
        _iptables("-A", INPUT_CHAIN, "-j", "DROP"),
        _iptables("-A", FORWARD_CHAIN, "-d", tasks, "-j", "DROP"),  # another task
        _iptables("-A", FORWARD_CHAIN, "-d", LINK_LOCAL, "-j", "DROP"),  # metadata services and the like
        _iptables("-A", FORWARD_CHAIN, "-s", CLOSED_POOL, "-j", "DROP"),  # no outbound access at all
        _iptables("-A", OUTPUT_CHAIN, "-m", "owner", "!", "--uid-owner", str(platform_uid), "-j", "DROP"),
    ]
    return commands


def jumps() -> list[tuple[str, list[str]]]:
    """(built-in chain, the rule that sends it to ours): checked with -C, put first with -I."""
    tasks = str(TASK_SUBNETS)
    return [
        ("INPUT", ["-s", tasks, "-j", INPUT_CHAIN]),
        ("FORWARD", ["-s", tasks, "-j", FORWARD_CHAIN]),
        ("OUTPUT", ["-d", tasks, "-j", OUTPUT_CHAIN]),
    ]


def _iptables(*args: str) -> list[str]:
    return ["iptables", "-w", "-t", TABLE, *args]


def create_chain(chain: str) -> list[str]:
    return _iptables("-N", chain)


def check_jump(builtin: str, rule: list[str]) -> list[str]:
    return _iptables("-C", builtin, *rule)


def insert_jump(builtin: str, rule: list[str]) -> list[str]:
    return _iptables("-I", builtin, "1", *rule)


async def apply(transport, platform_uid: int, public_port: int | None) -> None:
    """Put the boundary in place through ``transport`` (this machine's); safe to repeat."""
    for chain in chains():
        await transport.run(create_chain(chain), timeout=30)  # fails harmlessly when it exists
    for argv in rules(platform_uid, public_port):
        result = await transport.run(argv, timeout=30)
        if not result.ok:
            raise Refused("Tasks cannot be isolated on this machine, so none is started.", result.error_text())
    for builtin, rule in jumps():
        if not (await transport.run(check_jump(builtin, rule), timeout=30)).ok:
            result = await transport.run(insert_jump(builtin, rule), timeout=30)
            if not result.ok:
                raise Refused("Tasks cannot be isolated on this machine, so none is started.", result.error_text())
