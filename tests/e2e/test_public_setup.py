"""What `rosetta run` says about a public set-up before it serves anything."""

import signal
import subprocess
import time

import pytest

from tests.instance import ROSETTA, Platform

PUBLIC = "https://rosetta.example.org"  # only named: nothing here connects to it


def run(platform: Platform, **settings: str) -> subprocess.Popen:
    platform.settings.update(settings)
    platform.home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*ROSETTA, "run", "--port", str(platform.port)],
        env=platform.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    """Stop `rosetta run` if it still runs (it stops what it started)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


@pytest.mark.parametrize("tasks_domain", ["", "rosetta.example.org", "example.org", "tasks.example.org"])
def test_tasks_same_site_with_the_platform_are_refused(tmp_path, tasks_domain):
    process = run(Platform(tmp_path), ROSETTA_PUBLIC_URL=PUBLIC, ROSETTA_TASKS_DOMAIN=tasks_domain)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        stop(process)
    assert process.returncode == 1, output
    shown_domain = tasks_domain or "rosetta.example.org"  # empty: the default, the public host
    assert f"Task origins *.{shown_domain} are same-site with the platform's host rosetta.example.org" in output
    assert "ROSETTA_TASKS_DOMAIN=" in output and "ROSETTA_ALLOW_SAME_SITE_TASKS=1" in output  # the way out
    assert "Traceback" not in output
    assert not (tmp_path / "rosetta.sqlite3").exists()  # refused before doing anything


def test_an_operator_may_accept_it_and_is_warned(tmp_path):
    process = run(
        Platform(tmp_path),
        ROSETTA_PUBLIC_URL=PUBLIC,
        ROSETTA_TASKS_DOMAIN="tasks.example.org",
        ROSETTA_ALLOW_SAME_SITE_TASKS="1",
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not any("is starting at" in line for line in lines):
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            lines.append(process.stdout.readline())
        said = "".join(lines)
        assert "WARNING" in said and "same-site with the platform's host rosetta.example.org" in said
        assert "Accepted because ROSETTA_ALLOW_SAME_SITE_TASKS=1" in said
    finally:
        stop(process)


def test_separate_registrable_domain_starts_quietly(tmp_path):
    process = run(Platform(tmp_path), ROSETTA_PUBLIC_URL=PUBLIC, ROSETTA_TASKS_DOMAIN="example-tasks.org")
    try:
        line = process.stdout.readline()
        assert f"Rosetta is starting at {PUBLIC}" in line and "WARNING" not in line, line
    finally:
        stop(process)
