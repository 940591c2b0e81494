"""The storages `rosetta setup` registers: every user's own `home` on this machine, and with the
test bed up, the cluster's shared home (over SFTP, as the service account, a folder per user)."""

from __future__ import annotations

import json

from rosetta.computing import testbed
from rosetta.computing.contract import TASK_HOME
from rosetta.computing.models import Resource
from rosetta.core.paths import home
from rosetta.storage.models import Storage, StorageKind

TESTBED_STORAGE = "cluster-home"
HOME_DESCRIPTION = "Your own folder on this machine: the home of your tasks on local, kept from task to task."


def ensure_home() -> list[str]:
    local = Resource.objects.filter(name="local").first()
    storage, created = Storage.objects.get_or_create(
        name="home",
        defaults=dict(
            description=HOME_DESCRIPTION,
            kind=StorageKind.LOCAL,
            base_path=str(home() / "storage" / "home" / "{username}"),
            # The tasks' home itself, ticked by default: notebooks, dotfiles and `pip install --user`
            # outlive the task. A task that mounts storages runs in its owner's id range; podman
            # maps the image's layers into it with idmapped mounts (no copy: a user's first task is
            # not measurably slower, benchmarks/start_latency.py --first-starts), or, on kernels
            # without them, copies the layers once per user and image.
            mount_point=TASK_HOME,
            mounted_by_default=True,
        ),
    )
    if created and local is not None:
        storage.mountable_on.add(local)
    return [f"{'Added' if created else 'Kept'} storage {storage.name} ({storage.base_path})."]


def register_testbed() -> list[str]:
    """The cluster's shared home as a storage, when the test bed is up."""
    path = testbed.description_path()
    slurm = Resource.objects.filter(name="testbed-slurm").first()
    if not path.exists() or slurm is None:
        return []
    described = json.loads(path.read_text())
    service_home = next(a["home"] for a in described["accounts"] if a["name"] == testbed.SERVICE_ACCOUNT)
    storage, created = Storage.objects.update_or_create(
        name=TESTBED_STORAGE,
        defaults=dict(
            description="The test bed cluster's shared file system (a folder per user), seen by its nodes.",
            kind=StorageKind.SFTP,
            resource=slurm,
            base_path=f"{service_home}/users/{{username}}",
            mount_point=TASK_HOME,  # the home of tasks there, kept from task to task
            mounted_by_default=True,
        ),
    )
    storage.mountable_on.set(Resource.objects.filter(name__in=["testbed-slurm", "testbed-host"]))
    return [f"{'Added' if created else 'Updated'} storage {storage.name} (over SFTP on {slurm.name})."]


def ensure_demo_storages() -> list[str]:
    return [*ensure_home(), *register_testbed()]
