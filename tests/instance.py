"""Runs real Rosetta instances for tests: each in its own home directory and port, its
processes started exactly as an operator would start them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROSETTA = [sys.executable, "-m", "rosetta.cli.main"]
COMPONENTS = ("web", "controller", "gateway", "registry", "pusher", "builder")


FINISHED_ROWS = """
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone
from rosetta.catalog.models import Software
from rosetta.computing.models import Resource
from rosetta.tasks.models import Task, TaskEvent

owner = get_user_model().objects.get(username={username!r})
software = Software.objects.filter(name="hello").latest("pk")
resource = Resource.objects.get(name="local")
now = timezone.now()
events = [
    ("created", "Requested hello on local with 1 CPU and 512 MiB (version 1); storages: home at /home/rosetta."),
    ("starting", "The container started; waiting for its interface to answer."),
    ("running", "The interface answered through the gateway."),
    ("exited", "The container exited with code 0."),
]
ended = [now - timedelta(days={days_ago}, seconds=10 * number) for number in range({count})]
tasks = Task.objects.bulk_create(
    Task(owner=owner, software=software, resource=resource, name=f"{prefix}-{{number}}", phase="exited",
         exit_code=0, software_digest=software.image_digest, started=at, finished=at, phase_since=at)
    for number, at in enumerate(ended)
)
TaskEvent.objects.bulk_create(
    TaskEvent(task=task, phase=phase, reason=reason) for task in tasks for phase, reason in events
)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Platform:
    home: Path
    port: int = field(default_factory=free_port)
    ssh_door: bool = False  # run the SSH front door (`rosetta run` does unless ROSETTA_SSH_PORT=off)
    ssh_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # extra ROSETTA_* variables

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if k not in ("ROSETTA_TOKEN", "ROSETTA_URL")}
        return {
            **inherited,
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "ROSETTA_HOME": str(self.home),
            "ROSETTA_PUBLIC_URL": self.url,
            "ROSETTA_URL": self.url,
            "ROSETTA_TASK_START_TIMEOUT": "60",
            "ROSETTA_TESTBED_DIR": str(self.home / "no-testbed"),  # tests that use the test bed say so
            "ROSETTA_LOG_LEVEL": "INFO",
            "ROSETTA_SSH_PORT": str(self.ssh_port) if self.ssh_door else "off",
            # Copying the large built-in images into each instance's registry takes a minute or two:
            # tests that use them say so.
            "ROSETTA_DEMO_SOFTWARE": "hello",
            **self.settings,
        }

    def rosetta(
        self, *args: str, input: str | None = None, token: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        env = {**self.env, **({"ROSETTA_TOKEN": token} if token else {})}
        result = subprocess.run(
            [*ROSETTA, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"rosetta {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def set_up(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.rosetta("setup")

    def start(self, separately: bool = False) -> None:
        """`rosetta run`, or each component as its own process (so a test can kill one)."""
        if separately:
            for name in COMPONENTS:
                self.start_component(name)
        else:
            self._spawn("run", ["run", "--port", str(self.port)])
        self.wait_until_up()

    def start_component(self, name: str) -> None:
        args = {"gateway": ["gateway", "--port", str(self.port)]}.get(name, [name])  # `rosetta NAME`
        self._spawn(name, args)

    def _spawn(self, name: str, args: list[str]) -> None:
        # Private like everything else in the home (0600), as an operator's logs would be.
        log = os.fdopen(os.open(self.home / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        self.processes[name] = subprocess.Popen(
            [*ROSETTA, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the component alone, as a crash or an operator would: podman commands it
        started run to their end (killed half-way, they leave stale port forwards behind)."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        process.wait(timeout=30)

    def wait_until_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/login/", timeout=2).status_code == 200:
                    return
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited early:\n{self.logs()}")
            time.sleep(0.1)
        raise AssertionError(f"Rosetta did not come up at {self.url}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}" for path in self.home.glob("*.log")
        )

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)
        self.remove_containers()

    def remove_containers(self) -> None:
        if not (self.home / "instance_id").exists():
            return
        # A launch the stopped controller began may still be finishing: look again until none is left.
        for attempt in range(5):
            ids = self.container_ids()
            if not ids:
                break
            try:
                self.podman("rm", "--force", "--ignore", "--time", "0", *ids)
            except AssertionError:
                if attempt == 4:
                    raise
            time.sleep(0.5)
        self.remove_networks()

    def remove_networks(self) -> None:
        """The tasks' own networks, which the controller removes with their containers (left
        behind here, they would slow every later network operation on this machine)."""
        names = self.networks()
        if names:
            subprocess.run(["podman", "network", "rm", "--force", *names], env=self.podman_env, capture_output=True)

    def networks(self) -> list[str]:
        """This instance's task networks, by name."""
        instance = (self.home / "instance_id").read_text().strip()
        return self.podman(
            "network", "ls", "--format", "{{.Name}}", "--filter", f"label=rosetta.instance={instance}"
        ).split()

    @property
    def podman_env(self) -> dict[str, str]:
        """The environment under which podman sees this instance's settings."""
        return {**os.environ, "CONTAINERS_CONF": str(self.home / "podman" / "containers.conf")}

    def podman(self, *args: str) -> str:
        """Run podman with this instance's settings; its output."""
        result = subprocess.run(["podman", *args], env=self.podman_env, capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:2])} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def remove_container(self, name: str) -> None:
        """Remove a container as an operator would: `podman rm --force`, again while podman's
        own clean-up after the kill still holds the container's mounts (user namespaces)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.podman("rm", "--force", "--time", "0", name)
                return
            except AssertionError as error:
                if "device or resource busy" not in str(error) or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def build_image(self, tag: str, containerfile: str) -> str:
        """Build a small test image (FROM the built-in images: no registry needed)."""
        with tempfile.TemporaryDirectory() as context:
            Path(context, "Containerfile").write_text(containerfile)
            self.podman("build", "--quiet", "--pull=never", "--tag", tag, context)
        return tag

    def _list(self, template: str) -> list[str]:
        instance = (self.home / "instance_id").read_text().strip()
        return self.podman(
            "ps", "-a", "--no-trunc", "--format", template, "--filter", f"label=rosetta.instance={instance}"
        ).split()

    def container_ids(self) -> list[str]:
        return sorted(self._list("{{.ID}}"))

    def containers(self) -> list[str]:
        """Names of this instance's containers, as podman lists them."""
        return self._list("{{.Names}}")

    def containers_created_since(self, since: str) -> dict[str, int]:
        """How many containers podman created for each task of this instance since ``since``."""
        instance = (self.home / "instance_id").read_text().strip()
        lines = self.podman(
            "events", "--stream=false", "--since", since, "--filter", "event=create", "--format", "json"
        ).splitlines()
        created: dict[str, int] = {}
        for event in map(json.loads, lines):
            labels = event.get("Attributes") or {}
            if labels.get("rosetta.instance") == instance:
                created[labels["rosetta.task"]] = created.get(labels["rosetta.task"], 0) + 1
        return created

    def create_user(self, name: str, password: str | None = None, admin: bool = False) -> str:
        args = ["users", "create", name, *(["--admin"] if admin else []), *(["--password-stdin"] if password else [])]
        return self.rosetta(*args, input=f"{password}\n" if password else None).stdout.strip()

    def api(self, token: str) -> httpx.Client:
        """An API client authenticated with ``token``; paths start with /api/."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def task_client(self, task_id: str, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"http://{task_id}.localhost:{self.port}", headers=headers, timeout=30)

    @staticmethod
    def start_task(client: httpx.Client, software: str = "hello", **fields) -> str:
        """Start a task on the local resource through the API; its id."""
        response = client.post("/api/tasks", json={"software": software, "resource": "local", **fields})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def make_finished_tasks(self, username: str, count: int, days_ago: float = 2, prefix: str = "done") -> None:
        """``count`` tasks of ``username`` that ran `hello` on local and exited, 10 s apart, the latest
        ``days_ago``; each with the events a real one has: rows written straight into the database
        (`rosetta manage shell`), for volume."""
        rows = FINISHED_ROWS.format(username=username, count=count, days_ago=days_ago, prefix=prefix)
        self.rosetta("manage", "shell", "-c", rows)

    @staticmethod
    def list_tasks(client: httpx.Client, phase: str = "all") -> list[dict]:
        """Every task the API lists to ``client``, newest first, following its pages."""
        tasks, url, params = [], "/api/tasks", {"phase": phase, "limit": 500}
        while url:
            page = client.get(url, params=params).raise_for_status().json()
            tasks += page["items"]
            url, params = page["next"], None
        return tasks

    def wait_for_task(self, client: httpx.Client, task_id: str, phases: set[str], timeout: float = 60) -> dict:
        """Poll the API through ``client`` (a browser session or token client) until the task
        reaches one of ``phases``."""
        deadline = time.monotonic() + timeout
        while True:
            task = client.get(f"/api/tasks/{task_id}").raise_for_status().json()
            if task["phase"] in phases:
                return task
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} stayed {task['phase']}, wanted {phases}: {task}\n{self.logs()}")
            time.sleep(0.05)
