"""Apptainer (formerly Singularity), the engine of HPC sites: no daemon, no root, images as
files. It runs tasks inside batch jobs: the image is fetched by digest into a file in the
task's directory, then run in the foreground with host networking (apptainer's only kind),
a private /tmp and home, the task's storages bound in, and a clean environment read from the
task's 0600 file. A storage mounted at the home becomes apptainer's home (``--home``), so HOME
and the working directory are that folder.
"""

from __future__ import annotations

from dataclasses import replace

from django.core.exceptions import ValidationError

from rosetta.computing.contract import ContainerSpec
from rosetta.computing.engines.base import Engine, JobSteps, bind_mounts
from rosetta.computing.errors import ComputingError, ImageMissing, Refused
from rosetta.computing.kinds import Kind
from rosetta.computing.transports.base import CommandResult

IMAGE_FILE = "image.sif"


class ApptainerEngine(Engine):
    name = "apptainer"

    def __init__(self, executable: str = "apptainer") -> None:
        self.executable = executable

    def job_steps(self, spec: ContainerSpec, env_file: str) -> JobSteps:
        source = f"docker://{spec.image}"
        pull = [self.executable, "pull", "--force"]
        if spec.insecure_pull:
            pull.append("--no-https")  # the platform's registry; the content is checked by its digest
        home = spec.home_mount
        others = replace(spec, mounts=tuple(mount for mount in spec.mounts if mount is not home))
        return JobSteps(
            prepare=[*pull, IMAGE_FILE, source],
            run=[
                self.executable,
                "run",
                "--containall",
                "--cleanenv",
                "--no-init",
                "--writable-tmpfs",
                *(["--home", f"{home.source}:{home.target}"] if home else []),
                "--env-file",
                env_file,
                *bind_mounts(others, "destination", "ro"),
                IMAGE_FILE,
            ],  # fmt: skip
            cleanup=["rm", "-f", IMAGE_FILE],
        )

    # Apptainer has no daemon to list or stop containers: it serves batch jobs only, whose
    # scheduler watches and stops them. The direct ways of running are podman's and docker's.
    def _batch_only(self, *args, **kwargs):
        raise Refused("Apptainer runs tasks inside batch jobs only (a resource with Slurm).")

    run_argv = inspect_argv = parse_inspect = list_argv = parse_list = _batch_only
    stop_argv = stopped_one = remove_argv = removed = logs_argv = _batch_only

    def version_argv(self) -> list[str]:
        return [self.executable, "--version"]

    def refusal(self, result: CommandResult, spec: ContainerSpec) -> ComputingError:
        raw = result.error_text()
        if "manifest unknown" in raw.lower() or "not found" in raw.lower():
            return ImageMissing(spec.image, raw)
        return Refused("apptainer could not run the image.", raw)


def _in_batch_jobs_only(resource, combination) -> None:
    if not combination.scheduler.batch:
        raise ValidationError("Apptainer runs tasks inside batch jobs only: choose a batch scheduler (Slurm).")


KIND = Kind("engine", "apptainer", "Apptainer", lambda resource: ApptainerEngine(), validate=_in_batch_jobs_only)
