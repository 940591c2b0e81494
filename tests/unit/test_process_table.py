"""The table of the platform's processes (rosetta.processes.table) is what `rosetta run` starts,
what the CLI offers as `rosetta NAME`, and what the systemd units run."""

import configparser
import importlib
import shlex
from pathlib import Path

from click.testing import CliRunner

from rosetta.cli.main import cli
from rosetta.processes.run import children
from rosetta.processes.table import PROCESSES

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
NAMES = ["web", "controller", "gateway", "ssh-door", "builder", "registry", "pusher"]


def exec_start(unit: str) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(SYSTEMD / unit)
    return shlex.split(parser["Service"]["ExecStart"])


def test_each_process_has_one_entry_module_named_for_it():
    assert [process.name for process in PROCESSES] == NAMES
    for process in PROCESSES:
        assert process.entry == f"rosetta.processes.{process.name.replace('-', '_')}"
        assert process.does and process.needs


def test_each_process_is_a_command_of_the_cli_run_from_its_entry_module():
    for process in PROCESSES:
        assert cli.commands[process.name] is importlib.import_module(process.entry).command
        shown = CliRunner().invoke(cli, [process.name, "--help"])
        assert shown.exit_code == 0, shown.output
        assert f"Usage: cli {process.name} [OPTIONS]" in shown.output


def test_each_process_runs_as_a_systemd_unit_of_its_own_and_all_under_rosetta_run():
    program, *args = exec_start("rosetta-part@.service")
    assert program.endswith("/.venv/bin/rosetta") and args == ["%i"]  # rosetta-part@NAME runs `rosetta NAME`
    program, *args = exec_start("rosetta.service")
    assert program.endswith("/.venv/bin/rosetta") and args[0] == "run"


def test_rosetta_run_starts_every_process_of_the_table_and_hands_down_the_sockets_each_inherits():
    fds = {"http": [7, 8], "ssh": [9]}
    supervised = children(list(PROCESSES), fds, {"gateway": ["--port", "8000"]})
    commands = supervised["commands"]
    assert list(commands) == NAMES
    for name, argv in commands.items():
        assert argv[1:4] == ["-m", "rosetta.cli.main", name]
    assert commands["gateway"][4:] == ["--port", "8000", "--listen-fds", "7,8"]
    assert commands["ssh-door"][4:] == ["--listen-fds", "9"] and commands["web"][4:] == []
    assert supervised["pass_fds"] == {"gateway": [7, 8], "ssh-door": [9]}
    assert supervised["graceful"] == {"gateway", "ssh-door"}


def test_a_process_that_does_not_run_here_is_left_out():
    without_door = [process for process in PROCESSES if process.name != "ssh-door"]
    supervised = children(without_door, {"http": [7], "ssh": []}, {})
    assert "ssh-door" not in supervised["commands"] and supervised["graceful"] == {"gateway"}


def test_the_operators_guide_lists_the_processes_as_the_table_does():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    rows = [line.split(" | ") for line in guide.split("## Processes", 1)[1].splitlines() if line.startswith("| `")]
    assert [row[0].strip("| `") for row in rows] == NAMES
    for process, row in zip(PROCESSES, rows, strict=True):
        assert row[2].startswith("yes") == process.graceful
        assert (row[5].strip(" |") == "one") == process.one_machine
