"""A scheduler kind of a third party's, as small as the contract allows: it runs each task's
container with podman on this machine, by its own argv, with none of the built-in schedulers' help.

tests/integration/test_plugin_kind.py installs this file as a package of its own (a module and a
dist-info whose entry point names KIND in group rosetta.backends) for the platform's processes.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import AsyncIterator, Iterable

from rosetta.computing.contract import ContainerSpec, Observation, Seen, TaskRef
from rosetta.computing.engines.base import Engine, labels
from rosetta.computing.errors import Refused, Unreachable
from rosetta.computing.kinds import Kind, Options
from rosetta.computing.schedulers.base import Backend, Keep
from rosetta.computing.transports.base import Transport

FLAVOUR_LABEL = "toy.flavour"


class ToyOptions(Options):
    flavour: str = "plain"  # put on every container as a label: the resource's options reach the kind


class ToyBackend(Backend):
    def __init__(self, transport: Transport, engine: Engine, options: ToyOptions) -> None:
        super().__init__(transport, engine)
        self.options = options
        # This machine's podman needs the platform's settings (the engine knows where they are).
        self.podman = getattr(engine, "prefix", ["podman"])

    async def start(self, spec: ContainerSpec) -> Observation:
        env_file = posixpath.join(self.transport.work_dir, f"toy-{spec.task_id}.env")
        await self.transport.write_file(env_file, self.engine.env_file(spec))
        argv = [
            *self.podman, "run", "--detach", "--init", "--name", f"toy-{spec.task_id}", *labels(spec),
            "--label", f"{FLAVOUR_LABEL}={self.options.flavour}", "--publish", f"127.0.0.1::{spec.port}",
            f"--pull={spec.pull}", "--env-file", env_file, spec.image,
        ]  # fmt: skip
        result = await self.transport.run(argv, timeout=120)
        await self.transport.run(["rm", "-f", env_file], timeout=30)
        if not result.ok:
            raise Refused("The toy could not start the container.", result.error_text())
        return Observation(spec.task_id, Seen.STARTING, backend_state={"container": result.stdout.strip()})

    async def poll(self, instance: str, tasks: Iterable[TaskRef]) -> dict[str, Observation]:
        argv = [*self.podman, "ps", "--all", "--filter", f"label=rosetta.instance={instance}", "--format", "json"]
        result = await self.transport.run(argv, timeout=self.poll_timeout)
        if not result.ok:
            raise Unreachable("podman did not answer.", result.error_text())
        observations = {}
        for container in json.loads(result.stdout or "[]"):
            task_id = (container.get("Labels") or {}).get("rosetta.task")
            if not task_id or FLAVOUR_LABEL not in (container.get("Labels") or {}):
                continue
            handle = {"container": container["Id"]}
            if container["State"] == "running":
                port = next(p["host_port"] for p in container.get("Ports") or [])
                observations[task_id] = Observation(task_id, Seen.RUNNING, ("127.0.0.1", port), backend_state=handle)
            elif container["State"] in ("exited", "stopped"):
                code = container.get("ExitCode")
                observations[task_id] = Observation(task_id, Seen.ENDED, exit_code=code, backend_state=handle)
            else:
                observations[task_id] = Observation(task_id, Seen.STARTING, backend_state=handle)
        return observations

    async def end(self, task: TaskRef, grace_seconds: int, log_lines: int, keep: Keep | None = None) -> bytes:
        name = f"toy-{task.task_id}"
        await self.transport.run([*self.podman, "stop", "--ignore", "-t", str(grace_seconds), name], timeout=120)
        logs = await self.transport.run([*self.podman, "logs", "--tail", str(log_lines), name], timeout=60)
        output = logs.stdout.encode() if logs.ok else b""
        if keep is not None and logs.ok:
            await keep(output)
        await self.transport.run([*self.podman, "rm", "--force", "--ignore", name], timeout=120)
        return output

    def logs(self, task: TaskRef, *, follow: bool, tail: int | None = None) -> AsyncIterator[bytes]:
        argv = [*self.podman, "logs", *(["--follow"] if follow else []), *(["--tail", str(tail)] if tail else [])]
        return self.transport.stream([*argv, f"toy-{task.task_id}"])


def _toy(transport: Transport, engine: Engine, resource) -> ToyBackend:
    return ToyBackend(transport, engine, ToyOptions.model_validate(resource.scheduler_options))


KIND = Kind("scheduler", "toy", "A toy scheduler (podman, directly)", _toy, options=ToyOptions)
