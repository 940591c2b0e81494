"""The files deploy/ ships for operators (docs/deployment.md) say what the commands accept."""

import configparser
import shlex
from pathlib import Path

from rosetta.gateway.terminator import TerminatorSite, nginx_config
from rosetta.processes.run import command as run

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(SYSTEMD / name)
    return parser


def settings() -> dict[str, str]:
    lines = (SYSTEMD / "rosetta.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_unit_runs_the_gateway_on_loopback_and_the_ssh_door_for_users():
    service = unit("rosetta.service")["Service"]
    program, command, *args = shlex.split(service["ExecStart"])
    assert program.endswith("/.venv/bin/rosetta") and command == "run"
    options = run.make_context("run", args).params  # the options `rosetta run` takes
    assert options["host"] == "localhost" and options["port"] == 8000
    assert options["ssh_hosts"] == ("0.0.0.0", "::")
    assert service["EnvironmentFile"] == "/etc/rosetta/rosetta.env"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the graceful replacement of the gateway


def test_the_example_settings_make_a_terminator_configuration():
    env = settings()
    assert env["ROSETTA_PUBLIC_URL"].startswith("https://")
    site = TerminatorSite(env["ROSETTA_PUBLIC_URL"], env["ROSETTA_TASKS_DOMAIN"], "127.0.0.1:8000", "c.pem", "k.pem")
    assert "server_name rosetta.example.org *.example-tasks.org;" in nginx_config(site)
