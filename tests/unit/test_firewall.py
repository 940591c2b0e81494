"""The boundary's rules are replaced in one step, never flushed and refilled one by one."""

from rosetta.computing import firewall


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
