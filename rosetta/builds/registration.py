"""Registration: a built, checked image becomes the owner's catalogue entry, in one transaction
with the build's success (then the pusher copies it to the platform's registry); a failed build
records its reason and removes what it made."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from rosetta.builds import limits
from rosetta.builds.commands import BuildFailed, last_line, run_tool
from rosetta.builds.limits import too_large
from rosetta.builds.log import BuildLog
from rosetta.catalog.models import BuildState, Software, SoftwareBuild, Source
from rosetta.core.notify import after_commit
from rosetta.registry import PUSHER


def register(build: SoftwareBuild, output: BuildLog) -> Software:
    """The built image as the owner's entry, after its size is checked; with the build's success."""
    size, digest = _inspect(build.image)
    if size > limits.MAX_IMAGE_MB * 2**20:
        raise BuildFailed(too_large(size))
    output.say(f"==> Built {build.image} ({size / 2**20:,.1f} MiB)")
    declared = dict(build.declared)
    group_id = declared.pop("group", None)
    software = Software(
        owner=build.owner,
        name=build.name,
        version=build.version,
        image=build.image,
        image_digest=digest,
        source=Source.BUILD,
        group_id=group_id,
        **declared,
    )
    try:
        software.full_clean(validate_constraints=False)
        # The log's last line goes with the success: whoever sees the one sees the other.
        # Not the digest the catalogue shows once the pusher has copied the image: say which it is.
        output.add(
            f"==> Added {software.reference} to the catalogue (this machine's image digest {digest}; the "
            "catalogue shows the manifest digest in the platform's registry once the image is copied there)."
        )
        with transaction.atomic():
            software.save()
            updated = SoftwareBuild.objects.filter(pk=build.pk, state=BuildState.BUILDING).update(
                state=BuildState.SUCCEEDED, software=software, finished=timezone.now(), reason="", log=output.text
            )
            if not updated:
                raise BuildFailed("The build was cancelled meanwhile.")
            after_commit(PUSHER)  # to the platform's registry, for other machines
    except IntegrityError:
        raise BuildFailed(
            f"Meanwhile you added other software called {build.name}:{build.version}; nothing was added."
        ) from None
    except Exception as error:
        from django.core.exceptions import ValidationError

        if isinstance(error, ValidationError):
            raise BuildFailed(" ".join(error.messages)) from None
        raise
    return software


def _inspect(image: str) -> tuple[int, str]:
    from rosetta.computing.engines.podman import local_containers_conf

    argv = ["podman", "image", "inspect", "--format", "{{.Size}} {{.Digest}}", image]
    result = run_tool(argv, local_containers_conf(), 60)
    size, _, digest = result.stdout.strip().partition(" ")
    if result.returncode != 0 or not size.isdigit():
        raise BuildFailed(f"The built image cannot be found: {last_line(result.stderr)}")
    return int(size), digest


def remove_image(image: str) -> None:
    from rosetta.computing.engines.podman import local_containers_conf

    if image:
        run_tool(["podman", "image", "rm", "--force", image], local_containers_conf(), 120)


def finish(build: SoftwareBuild, state: str, reason: str) -> None:
    SoftwareBuild.objects.filter(pk=build.pk).update(state=state, reason=reason[:2000], finished=timezone.now())
