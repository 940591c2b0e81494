"""An SSH task in Debian's Chromium, with the real `localhost/rosetta/ssh` image: Open in the
task list leads to the ssh command (there is no web page to open), the page shows the task's
host key fingerprint, and it fits a phone's screen."""

import re
import subprocess

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser import page, pytestmark  # noqa: F401  (the browser fixture, the skip without Chromium)
from tests.e2e.test_browser_everyday import PHONE, assert_fits, log_in
from tests.e2e.test_ssh_door import keygen, ssh_software
from tests.instance import Platform

PASSWORD = "a long everyday password"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A Rosetta with its SSH door, without a registry (the large ssh image runs here)."""
    instance = Platform(
        tmp_path_factory.mktemp("rosetta-ssh-pages"),
        ssh_door=True,
        settings={"ROSETTA_REGISTRY_LISTEN": "off", "ROSETTA_DEMO_SOFTWARE": "hello,ssh"},
    )
    instance.set_up()
    instance.start()
    yield instance
    instance.stop()


def test_an_ssh_task_opens_on_its_command_with_its_host_key_and_fits_a_phone(platform, page, tmp_path):  # noqa: F811
    software = ssh_software(platform)
    token = platform.create_user("grace", password=PASSWORD)
    key = keygen(tmp_path, "grace_key")
    with platform.api(token) as api:
        assert api.post("/api/me/keys", json={"public_key": (tmp_path / "grace_key.pub").read_text()}).is_success
        task_id = platform.start_task(api, software, name="shell")
        platform.wait_for_task(api, task_id, {"running"}, timeout=90)
    assert key.exists()
    logs = platform.rosetta("task", "logs", task_id, token=token).stdout
    printed = re.search(r"rosetta-sshd: host key (ssh-ed25519 \S+)", logs)
    assert printed, logs
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=printed.group(1), capture_output=True, text=True, check=True
    ).stdout.split()[1]

    # Open, in the list, leads to the task's page at its ssh command, not to a browser error.
    log_in(page, platform, "grace")
    row = page.locator(f'tr[data-task-id="{task_id}"]')
    row.get_by_role("link", name="Open").click()
    expect(page).to_have_url(f"{platform.url}/tasks/{task_id}/#ssh-access")
    expect(page.get_by_label("SSH command")).to_have_value(
        f"ssh -J grace@localhost:{platform.ssh_port} rosetta@{task_id}"
    )
    # An old link to /open goes there too.
    page.goto(f"{platform.url}/tasks/{task_id}/open")
    expect(page).to_have_url(f"{platform.url}/tasks/{task_id}/#ssh-access")

    # The host key ssh asks about, as ssh-keygen prints it for the key the task printed.
    expect(page.locator('[data-field="host-key-fingerprint"]')).to_have_text(fingerprint)
    assert fingerprint.startswith("SHA256:")

    # At 375 px the page is no wider than the screen.
    page.set_viewport_size(PHONE)
    assert_fits(page, f"{platform.url}/tasks/{task_id}/")
    assert_fits(page, f"{platform.url}/tasks/")
    with platform.api(token) as api:
        api.post(f"/api/tasks/{task_id}/stop")
