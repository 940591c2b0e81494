"""Batch limits in every front end, on the test bed's real Slurm cluster (testbed/up): the
partition and time limit on the form (with the partitions' limits beside them) and in the CLI
(`--partition`, `--time 2h`), the time left on the task list, and what `rosetta task show`
says of a batch job: its id, node, pending reason, expected start and time left."""

import json
import re
import time

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser import page, pytestmark  # noqa: F401  (the browser fixture, the skip without Chromium)
from tests.instance import Platform, free_port
from tests.integration.test_remote import TESTBED, bed, job_ends, stop_everything

PASSWORD = "a long batch password"
SLURM = "testbed-slurm"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A platform with the test bed's resources registered (and checked: its partitions are
    known), and a user of it with a password and a token."""
    described = bed()
    platform = Platform(tmp_path_factory.mktemp("batch"), settings={
        "ROSETTA_TESTBED_DIR": str(TESTBED),
        "ROSETTA_REGISTRY_LISTEN": f"{described['bridge']['address']}:{free_port()}",
    })  # fmt: skip
    platform.set_up()
    platform.start()
    try:
        token = platform.create_user("henrietta", password=PASSWORD)
        with platform.api(token) as api:
            yield platform, api, token
            stop_everything(platform, api)  # remote work outlives the platform: leave none behind
    finally:
        platform.stop()


WAIT = 400  # seconds: the test bed's cluster is shared, and jobs of other tests may run first


def task_of(api):
    return lambda task_id: api.get(f"/api/tasks/{task_id}").json()


def is_pending(task: dict) -> bool:
    """Queued with a reason Slurm gives: no room (Resources), other jobs first (Priority), ..."""
    return task["phase"] == "queued" and task["placement"]["reason"] not in (None, "", "None")


def rosetta_task(platform, token, *args, check=True):
    return platform.rosetta("task", *args, token=token, check=check, timeout=WAIT + 30)


def test_the_cli_takes_partition_and_time_as_slurm_does(cluster):
    platform, api, token = cluster
    # The partitions and their limits, beside the resources.
    resources = platform.rosetta("resources", "list", token=token).stdout
    assert "testbed-slurm:\n  partition debug (default): up to 1 h, 2 CPUs and 4G per node\n" in resources
    assert "  partition long: up to 1 d, 2 CPUs and 4G per node" in resources
    # Time limits as Slurm and people write them; the partition's limit is said before anything runs.
    too_long = rosetta_task(platform, token, "start", "hello", "--on", SLURM, "--partition", "debug", "--time", "2h",
                            check=False)  # fmt: skip
    assert too_long.returncode == 1 and "At most 60 minutes in partition debug of testbed-slurm." in too_long.stderr
    slurm_form = rosetta_task(platform, token, "start", "hello", "--on", SLURM, "--partition", "long",
                              "--time", "1-12:00:00", check=False)  # fmt: skip
    assert slurm_form.returncode == 1 and "At most 1440 minutes in partition long" in slurm_form.stderr
    nonsense = rosetta_task(platform, token, "start", "hello", "--on", SLURM, "--time", "soon", check=False)
    assert nonsense.returncode == 2
    assert "'soon' is not a time limit (e.g. 90, 90m, 2h, 1h30m or 1-12:00:00)" in nonsense.stderr
    assert not platform.list_tasks(api)  # nothing was started by a refusal

    started = json.loads(rosetta_task(platform, token, "start", "hello", "--on", SLURM, "--name", "batch-cli",
                                      "--partition", "long", "--time", "1h30m", "--json").stdout)  # fmt: skip
    assert (started["partition"], started["time_limit_minutes"]) == ("long", 90)
    bare = json.loads(rosetta_task(platform, token, "start", "hello", "--on", SLURM, "--name", "bare-minutes",
                                   "--partition", "long", "--time", "90", "--json").stdout)  # fmt: skip
    assert bare["time_limit_minutes"] == 90  # a bare number is minutes, as for sbatch
    rosetta_task(platform, token, "stop", "bare-minutes")
    platform.wait_for_task(api, bare["id"], {"stopped"}, timeout=60)
    # batch-cli runs on: test_a_running_job_shows_its_node_and_time_left


@pytest.mark.timeout(900)
def test_a_waiting_job_says_why_and_when_it_should_start(cluster):
    platform, api, token = cluster
    # Three jobs of two CPUs on two nodes of two: one of them waits, whatever else the cluster runs.
    jobs = [
        json.loads(rosetta_task(platform, token, "start", "hello", "--on", SLURM, "--name", f"whole-node-{n}",
                                "--cpus", "2", "--time", "10", "--json").stdout)["id"]
        for n in range(3)
    ]  # fmt: skip
    deadline = time.monotonic() + WAIT
    while not (waiting := [task for task in map(task_of(api), jobs) if is_pending(task)]):
        assert time.monotonic() < deadline, [task_of(api)(job)["placement"] for job in jobs]
        time.sleep(1)
    # Before Slurm has planned it, `show` says the start is not known yet rather than leaving it out.
    first = rosetta_task(platform, token, "show", waiting[0]["id"]).stdout
    assert re.search(r"^starts at: (\d{4}-\d\d-\d\d \d\d:\d\d|not known yet)", first, re.MULTILINE), first
    # Slurm's backfill plans a waiting job's start within seconds (its next pass).
    while not (
        planned := [task for task in map(task_of(api), jobs) if is_pending(task) and task["placement"]["starts_at"]]
    ):
        assert time.monotonic() < deadline, [task_of(api)(job)["placement"] for job in jobs]
        time.sleep(1)
    task = planned[0]
    shown = rosetta_task(platform, token, "show", task["id"]).stdout
    reason = task["placement"]["reason"]
    assert "phase:     queued" in shown and f"pending:   {reason} (the scheduler's reason)" in shown, shown
    assert f"job:       {task['placement']['job']}" in shown
    assert re.search(r"^starts at: \d{4}-\d\d-\d\d \d\d:\d\d", shown, re.MULTILINE), (shown, task["placement"])
    for job in jobs:
        rosetta_task(platform, token, "stop", job)
    assert job_ends(task["placement"]["job"])


@pytest.mark.timeout(900)
def test_the_form_offers_partition_and_time_with_their_limits(cluster, page):  # noqa: F811
    platform, api, _ = cluster
    log_in_as(page, platform)
    page.goto(f"{platform.url}/tasks/new/?software=hello")
    batch = page.locator("[data-batch-fields]")
    page.get_by_label("Resource").select_option("local")
    expect(batch).to_be_hidden()  # no batch scheduler there
    page.get_by_label("Resource").select_option(SLURM)
    expect(batch).to_be_visible()
    partition_help = page.locator(".field:has(#id_partition) .help")
    expect(partition_help).to_have_text(
        "Partitions of testbed-slurm: debug (default): up to 1 h, 2 CPUs and 4G per node; "
        "long: up to 1 d, 2 CPUs and 4G per node."
    )
    expect(page.locator(".field:has(#id_time_limit) .help")).to_have_text(
        "e.g. 90, 90m, 2h, 1h30m or 1-12:00:00; 1 h when empty."
    )
    page.get_by_label("Name").fill("batch-form")
    page.get_by_label("Memory").fill("256M")
    # The partitions its check found, to choose from, the default chosen.
    expect(page.get_by_label("Partition").locator("option")).to_have_text(["debug (default)", "long"])
    expect(page.get_by_label("Partition")).to_have_value("debug")
    page.get_by_label("Time limit").fill("2h")
    page.get_by_role("button", name="Start task").click()
    expect(page.locator(".field:has(#id_time_limit) .field-errors")).to_have_text(
        "At most 60 minutes in partition debug of testbed-slurm."
    )
    expect(batch).to_be_visible()
    page.get_by_label("Time limit").fill("soon")
    page.get_by_role("button", name="Start task").click()
    expect(page.locator(".field:has(#id_time_limit) .field-errors")).to_contain_text("'soon' is not a time limit")
    page.get_by_label("Time limit").fill("45m")
    page.get_by_role("button", name="Start task").click()
    expect(page.locator("h1")).to_contain_text("batch-form")
    expect(page.locator(".facts").first).to_contain_text("partition debug · 45 min")
    task = task_of(api)("batch-form")
    assert (task["resource"], task["partition"], task["time_limit_minutes"]) == (SLURM, "debug", 45)
    # batch-form runs on: test_running_jobs_show_their_node_and_time_left


@pytest.mark.timeout(900)
def test_running_jobs_show_their_node_and_time_left(cluster, page):  # noqa: F811
    platform, api, token = cluster
    started = platform.wait_for_task(api, task_of(api)("batch-cli")["id"], {"running"}, timeout=WAIT)
    assert 60 * 60 < started["time_left_seconds"] <= 90 * 60
    shown = rosetta_task(platform, token, "show", "batch-cli").stdout
    placement = started["placement"]
    for line in ("partition: long", "max time:  1 h 30 min", f"job:       {placement['job']}",
                 f"node:      {placement['node']}"):  # fmt: skip
        assert line in shown, shown
    assert re.search(r"^time left: 1 h( \d+ min)?$", shown, re.MULTILINE), shown
    listed = rosetta_task(platform, token, "list").stdout.splitlines()
    row = next(line for line in listed if line.startswith("batch-cli "))
    assert "TIME LEFT" in listed[0] and re.search(r"  1 h( \d+ min)?  ", row), listed

    # The form's task: the time left on its page and on the task list.
    form_task = platform.wait_for_task(api, task_of(api)("batch-form")["id"], {"running"}, timeout=WAIT)
    assert 0 < form_task["time_left_seconds"] <= 45 * 60
    log_in_as(page, platform)
    page.goto(f"{platform.url}/tasks/{form_task['id']}/")
    expect(page.locator('[data-field="time-left"]')).to_have_text(re.compile(r"^\d+ min$"))
    expect(page.locator('[data-field="placement-node"]')).to_have_text(form_task["placement"]["node"])
    page.goto(f"{platform.url}/tasks/")
    expect(page.locator(f'tr[data-task-id="{form_task["id"]}"] [data-left-until]')).to_have_text(
        re.compile(r"^ · \d+ min left$")
    )
    for task in (started, form_task):
        rosetta_task(platform, token, "stop", task["id"])
        platform.wait_for_task(api, task["id"], {"stopped"}, timeout=60)


def log_in_as(page, platform):  # noqa: F811
    """The module's user, in the browser."""
    page.goto(f"{platform.url}/login/")
    page.get_by_label("Username").fill("henrietta")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{platform.url}/tasks/")


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"colour": "red"}, "colour: unknown option"),
        ({"time_limit_minutes": "soon"}, "time_limit_minutes: Input should be a valid integer"),
        ({"qos": "normal; scancel -u $USER"}, "qos: String should match pattern"),
        ({"gres": "gpu:1 --wrap=id"}, "gres: String should match pattern"),
    ],
)
def test_scheduler_options_the_kind_refuses_are_a_400_naming_the_option(cluster, options, said):
    platform, api, _ = cluster
    before = len(platform.list_tasks(api))
    response = api.post("/api/tasks", json={"software": "hello", "resource": SLURM, "options": options})
    assert response.status_code == 400, response.text
    assert said in response.json()["detail"]
    assert len(platform.list_tasks(api)) == before  # nothing was started by a refusal


def test_the_cli_asks_for_an_account_and_a_qos(cluster):
    platform, api, token = cluster
    refused = rosetta_task(platform, token, "start", "hello", "--on", SLURM, "--qos", "a|b", check=False)
    assert refused.returncode == 1 and "qos: String should match pattern" in refused.stderr
    started = json.loads(rosetta_task(platform, token, "start", "hello", "--on", SLURM, "--name", "charged",
                                      "--account", "astro", "--qos", "high", "--json").stdout)  # fmt: skip
    assert started["options"] == {"account": "astro", "qos": "high"}
    rosetta_task(platform, token, "stop", "charged")
