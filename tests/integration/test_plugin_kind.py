"""A scheduler kind from a package of its own, found through its entry point by the real platform:
an operator adds a resource of that kind, a user's task runs on it and answers through the gateway."""

import json
import os
import subprocess
from pathlib import Path

import pytest

TOY = Path(__file__).with_name("toy_scheduler.py")


def install_toy_package(site: Path) -> None:
    """The toy as pip would have installed it: its module and a dist-info naming its entry point."""
    site.mkdir()
    (site / "toy_scheduler.py").write_text(TOY.read_text())
    info = site / "rosetta_toy_scheduler-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rosetta-toy-scheduler\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rosetta.backends]\nscheduler.toy = toy_scheduler:KIND\n")


@pytest.mark.podman
def test_a_task_runs_on_a_resource_of_a_plugged_in_scheduler_kind(fresh_platform, tmp_path):
    platform = fresh_platform
    install_toy_package(tmp_path / "site")
    path = [str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])]
    platform.settings["PYTHONPATH"] = os.pathsep.join(path)
    platform.start(separately=True)
    admin = platform.create_user("root-of-toys", admin=True)
    token = platform.create_user("ada")

    with platform.api(admin) as api:
        kinds = {(kind["role"], kind["name"]): kind for kind in api.get("/api/kinds").json()}
        assert kinds[("scheduler", "toy")]["options"]["properties"]["flavour"]["default"] == "plain"
        refused = platform.rosetta("resources", "add", "toys", "--scheduler", "toy", "--option", "colour=red",
                                   check=False)  # fmt: skip
        assert refused.returncode != 0 and "Unknown settings: colour." in refused.stderr
    platform.rosetta("resources", "add", "toys", "--scheduler", "toy", "--flavour", "mint")  # from its schema
    shown = json.loads(platform.rosetta("resources", "show", "toys", "--json").stdout)
    assert "A toy scheduler (podman, directly)" in shown["kind"]
    assert shown["scheduler_options"] == {"flavour": "mint"}

    with platform.api(token) as api:
        task_id = platform.start_task(api, resource="toys", storages=[])
        platform.wait_for_task(api, task_id, {"running"})
        assert platform.task_client(task_id, token).get("/").status_code == 200
        flavour = platform.podman("inspect", "--format", '{{index .Config.Labels "toy.flavour"}}', f"toy-{task_id}")
        assert flavour.strip() == "mint"

        assert api.post(f"/api/tasks/{task_id}/stop").status_code == 202
        platform.wait_for_task(api, task_id, {"stopped"})
        gone = subprocess.run(["podman", "container", "exists", f"toy-{task_id}"], env=platform.podman_env)
        assert gone.returncode == 1
