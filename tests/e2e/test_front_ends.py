"""Smaller defects a new group met, each tried through a running platform as they met it: the
CLI and the API (the pages' side is in test_front_ends_browser.py)."""

import json
import subprocess

from tests.e2e.test_http_flow import login
from tests.instance import ROSETTA

HELLO = "localhost/rosetta/hello"


def test_a_hidden_entry_starts_by_its_exact_version_only(platform):
    token = platform.create_user("hilde")
    platform.rosetta("software", "add", "quiet", "--image", HELLO, "--version", "1", token=token)
    platform.rosetta("software", "hide", "quiet:1", token=token)
    refused = platform.rosetta("task", "start", "quiet", "--on", "local", token=token, check=False)
    assert refused.returncode == 1, refused.stdout
    assert "Every version of 'quiet' you may start is hidden: name one exactly, NAME:VERSION." in refused.stderr
    started = json.loads(platform.rosetta("task", "start", "quiet:1", "--on", "local", "--json", token=token).stdout)
    assert (started["software"], started["software_version"]) == ("quiet", "1")
    platform.rosetta("task", "delete", started["id"], token=token)


def test_the_cli_shows_descriptions_whole(platform):
    token = platform.create_user("wordy")
    description = (
        "Reduces raw spectra from the long-slit instrument: bias, flat field, wavelength calibration "
        "and sky subtraction, with plots of every step."
    )
    platform.rosetta("software", "add", "reducer", "--image", HELLO, "--description", description, token=token)
    piped = platform.rosetta("software", "list", "--mine", token=token).stdout
    assert description in piped  # piped: whole, on the entry's line
    env = {**platform.env, "ROSETTA_TOKEN": token, "COLUMNS": "120"}
    narrow = subprocess.run(
        [*ROSETTA, "software", "list", "--mine"], capture_output=True, text=True, env=env, timeout=60
    ).stdout
    lines = narrow.rstrip("\n").splitlines()
    assert len(lines) > 2 and all(len(line) <= 120 for line in lines), narrow  # wrapped to the terminal
    column = lines[0].index("DESCRIPTION")
    assert all(line[:column].strip() == "" for line in lines[2:])  # under its own column
    assert description in " ".join(narrow.split())  # every word, in order
    shown = platform.rosetta("software", "show", "reducer", token=token).stdout
    assert f"description: {description}" in shown


def test_a_task_shows_the_digest_the_catalogue_shows_and_says_which(platform):
    token = platform.create_user("digest-reader", password="a long digest password")
    with platform.api(token) as api:
        entry = api.get("/api/software/resolve", params={"reference": "hello"}).raise_for_status().json()
        assert entry["registry_state"] == "pushed" and entry["digest"] == entry["registry_digest"]
        task = api.get(f"/api/tasks/{platform.start_task(api)}").json()
    # The catalogue's digest (the registry's manifest), not this machine's image id, and said so.
    assert task["software_digest"] == entry["digest"] != entry["image_digest"]
    assert task["software_digest_kind"] == "registry"
    shown = platform.rosetta("task", "show", task["id"], token=token).stdout
    assert (
        f"digest:    {entry['digest']} (the manifest digest in the platform's registry, as the catalogue shows it)"
        in shown
    )
    assert f"digest:      {entry['digest']}" in platform.rosetta("software", "show", "hello", token=token).stdout
    browser = login(platform, "digest-reader", "a long digest password")
    page = browser.get(f"/tasks/{task['id']}/").text
    browser.close()
    assert f'data-field="digest">{entry["digest"]}<' in page
    assert "the image's manifest digest in the platform's registry, as the catalogue shows it" in page
    assert entry["image_digest"] not in page
    with platform.api(token) as api:
        api.post(f"/api/tasks/{task['id']}/stop")


def test_staff_say_why_they_stop_anothers_task_and_its_owner_reads_it(platform):
    owner = platform.create_user("owner-of-work")
    staff = platform.create_user("staff-stopper", admin=True)
    with platform.api(owner) as api, platform.api(staff) as staff_api:
        task_id = platform.start_task(api, name="long-run")
        refused = platform.rosetta("task", "stop", task_id, token=staff, check=False)
        assert refused.returncode == 1
        assert "Say why you stop owner-of-work's task long-run: they see the reason on the task." in refused.stderr
        blank = staff_api.post(f"/api/tasks/{task_id}/stop", json={"reason": "   "})
        assert blank.status_code == 400 and "Say why" in blank.json()["detail"]
        assert api.get(f"/api/tasks/{task_id}").json()["desired"] == "running"
        said = platform.rosetta("task", "stop", task_id, "--reason", "The node is serviced tonight", token=staff)
        assert "Stopping long-run" in said.stdout
        stopped = platform.wait_for_task(api, task_id, {"stopped"}, timeout=60)
    reasons = [event["reason"] for event in stopped["events"]]
    assert "Stop requested by staff (staff-stopper): The node is serviced tonight." in reasons
    shown = platform.rosetta("task", "show", task_id, token=owner).stdout
    assert "Stop requested by staff (staff-stopper): The node is serviced tonight." in shown
    # Owners stop their own tasks as before, without a word.
    with platform.api(owner) as api:
        mine = platform.start_task(api, name="own-stop")
        assert api.post(f"/api/tasks/{mine}/stop").status_code == 202
        assert api.get(f"/api/tasks/{mine}").json()["desired"] == "stopped"
