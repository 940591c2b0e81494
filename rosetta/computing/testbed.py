"""The project's test bed (testbed/up) as computing resources: an SSH host with podman, one
with docker and a Slurm cluster, for tests and demos. Its host keys come from the test bed's
own description, which its scripts wrote when they made them: they are pinned as they are."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from rosetta.accounts import testbed_login
from rosetta.computing.models import Resource
from rosetta.computing.services import check_resource, save_resource

SERVICE_ACCOUNT = "rosetta"
RESOURCES = {  # name: (host in testbed.json, scheduler, engine, description)
    "testbed-host": ("rstb-host", "none", "podman", "A test bed host reached over SSH, with rootless podman."),
    "testbed-docker": ("rstb-docker", "none", "docker", "A test bed host reached over SSH, with docker."),
    "testbed-slurm": ("rstb-login", "slurm", "podman", "The test bed's Slurm cluster (two nodes), with podman."),
}


def description_path() -> Path:
    return Path(os.environ.get("ROSETTA_TESTBED_DIR", "/var/lib/rosetta-testbed")) / "testbed.json"


def register() -> list[str]:
    """Add (or refresh) the test bed's resources and check them, and log in through its identity
    provider; what was done, in words."""
    path = description_path()
    if not path.exists():
        return []
    testbed = json.loads(path.read_text())
    said = testbed_login.configure(testbed)  # its identity provider, for the platform's logins
    hosts = {host["name"]: host for host in testbed["hosts"]}
    key = Path(testbed["ssh"]["private_key"]).read_text()
    for name, (host_name, scheduler, engine, description) in RESOURCES.items():
        host = hosts[host_name]
        resource = Resource.objects.filter(name=name).first() or Resource(name=name)
        resource.host_keys = "\n".join(known["public_key"] for known in host["host_keys"])
        save_resource(
            resource, private_key=key, description=description, transport="ssh", host=host["address"],
            port=host["ssh_port"], username=SERVICE_ACCOUNT, credentials="service", scheduler=scheduler, engine=engine,
            max_cpus=2.0, max_memory_mb=2048, enabled=True,
        )  # fmt: skip
        report = asyncio.run(check_resource(resource))
        state = "ready" if not report.problems else f"not ready: {' '.join(report.problems)}"
        said.append(
            f"Test bed resource {name} ({resource.username}@{resource.host}, {report.engine or engine}): {state}"
        )
    return said
