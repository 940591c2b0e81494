"""The boundary's rules are replaced in one step, never flushed and refilled one by one; task
networks carry no IPv6, which the rules leave alone."""

from rosetta.computing import firewall
from rosetta.computing.contract import ContainerSpec
from rosetta.computing.engines.podman import TASK_NETWORK_OPTIONS, PodmanEngine


def test_our_chains_are_emptied_and_refilled_in_one_commit_and_nothing_else_is_touched():
    text = firewall.restore_input(platform_uid=998, public_port=8443).decode()
    lines = text.splitlines()
    assert lines[0] == "*mangle" and lines[-1] == "COMMIT"
    declared = [line for line in lines if line.startswith(":")]
    assert declared == [f":{chain} - [0:0]" for chain in firewall.chains()]
    rules = [line for line in lines if line.startswith("-A")]
    assert rules and all(line.split()[1] in firewall.chains() for line in rules)
    assert "-A ROSETTA-TASKS-IN -p tcp --dport 8443 -j RETURN" in rules
    assert rules[-1] == "-A ROSETTA-TASKS-OUT -m owner ! --uid-owner 998 -j DROP"
    assert firewall.RESTORE[-1] == "--noflush"  # the machine's other rules stay as they are


def test_task_networks_carry_no_ipv6_so_these_rules_are_the_whole_boundary():
    # Below IPv6's minimum link MTU (RFC 8200) Linux gives an interface no IPv6 address at all;
    # IPv4 needs only 576.
    assert 576 <= firewall.NETWORK_MTU < 1280
    spec = ContainerSpec(task_id="t1", instance="i1", image="x", port=8080, cpus=1, memory_mb=64)
    create = PodmanEngine(task_networks=True).network_create_argv(spec)
    options = create.index("create") + 1
    assert create[options : options + len(TASK_NETWORK_OPTIONS)] == list(TASK_NETWORK_OPTIONS)  # as the builder's
    assert create[create.index(f"mtu={firewall.NETWORK_MTU}") - 1] == "--opt"
