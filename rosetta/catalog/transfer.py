"""Software carried between Rosettas: an entry's image as an OCI archive plus what the entry says
as JSON (`rosetta software export NAME:VERSION -o DIR`, `rosetta software import DIR`).

skopeo copies the image with its manifest as it is (``--preserve-digests``): the imported entry
records the very digest the exported one did, and an archive whose manifest does not match the
digest its JSON names is refused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, transaction
from django.utils import timezone

from rosetta.catalog.built_images import built_image_name
from rosetta.catalog.models import RegistryState, Software, Source, Visibility
from rosetta.core.errors import Conflict
from rosetta.core.notify import notify
from rosetta.registry import PUSHER, is_local
from rosetta.registry.push import podman_env

FORMAT = 1
ARCHIVE = "image.tar"
METADATA = "software.json"
CARRIED = ("name", "version", "description", "interface_protocol", "interface_port", "honours_base_port",
           "own_authorization", "environment")  # fmt: skip
COPY_TIMEOUT = 3600


class TransferFailed(Exception):
    """The export or import did not happen; the message says why in plain words."""


def _skopeo(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["skopeo", *args], capture_output=True, env=podman_env(), timeout=COPY_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TransferFailed(f"skopeo could not run: {error}") from None


def _manifest_digest(archive: Path) -> str:
    result = _skopeo("inspect", "--raw", f"oci-archive:{archive}")
    if result.returncode != 0:
        raise TransferFailed(f"{archive} is not an image archive: {result.stderr.decode(errors='replace').strip()}")
    return "sha256:" + hashlib.sha256(result.stdout).hexdigest()


def export_software(software: Software, directory: Path) -> dict:
    """Write ``software``'s image (``DIR/image.tar``) and entry (``DIR/software.json``)."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise TransferFailed(f"{directory} is not empty: export into a new folder.")
    source = f"containers-storage:{software.image}" if is_local(software.image) else f"docker://{software.image}"
    archive = directory / ARCHIVE
    copied = _skopeo("copy", "--quiet", "--preserve-digests", source, f"oci-archive:{archive}:{software.reference}")
    if copied.returncode != 0:
        raise TransferFailed(f"The image {software.image} could not be copied: {copied.stderr.decode().strip()}")
    metadata = {
        "format": FORMAT,
        **{field: getattr(software, field) for field in CARRIED},
        "image": software.image,
        "digest": _manifest_digest(archive),  # the archive's manifest: checked on import
        "catalogue_digest": software.digest,  # what tasks of it recorded (the registry's, once copied)
        "containerfile": _containerfile(software),
        "exported": timezone.now().isoformat(),
    }
    (directory / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return metadata


def _containerfile(software: Software) -> str:
    try:
        return software.build.containerfile if software.source == Source.BUILD else ""
    except ObjectDoesNotExist:  # its build was removed
        return ""


def read_metadata(directory: Path) -> dict:
    try:
        metadata = json.loads((directory / METADATA).read_text())
    except FileNotFoundError:
        raise TransferFailed(f"{directory} holds no {METADATA}: give a folder that `software export` made.") from None
    except (OSError, ValueError) as error:
        raise TransferFailed(f"{directory / METADATA} cannot be read: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise TransferFailed(f"{directory / METADATA} is not a software export of this Rosetta (format {FORMAT}).")
    missing = [field for field in (*CARRIED, "digest") if field not in metadata]
    if missing:
        raise TransferFailed(f"{directory / METADATA} lacks {', '.join(missing)}.")
    return metadata


def import_software(directory: Path, owner=None) -> Software:
    """Load the image into this machine's store (its digest checked) and add the entry: the
    owner's private entry, or without one an entry of the platform that everyone sees."""
    metadata = read_metadata(directory)
    archive = directory / ARCHIVE
    if archive.is_symlink() or not archive.is_file():
        raise TransferFailed(f"{archive} is not a file: give a folder that `software export` made.")
    digest = _manifest_digest(archive)
    if digest != metadata["digest"]:
        raise TransferFailed(f"The image archive's digest is {digest}, not the {metadata['digest']} its entry names.")
    fields = {field: metadata[field] for field in CARRIED}
    # A user's import is theirs as their builds are: under the builds' namespace, used only through
    # its entry (catalog.built_images); the platform's is everyone's.
    if owner is not None:
        image = built_image_name(owner, fields["name"], fields["version"])
    else:
        image = f"localhost/rosetta-imported/platform/{fields['name']}:{fields['version']}"
    software = Software(owner=owner, image=image, image_digest=digest, source=Source.IMAGE,
                        visibility=Visibility.PRIVATE if owner else Visibility.EVERYONE, **fields)  # fmt: skip
    if metadata.get("containerfile"):
        software.description = (software.description + "\n\nImported; built from a Containerfile there.").strip()
    software.full_clean(validate_constraints=False)
    if Software.objects.filter(owner=owner, name=software.name, version=software.version).exists():
        raise Conflict(f"There is already software called {software.reference} here: import into a new version.")
    loaded = _skopeo("copy", "--quiet", "--preserve-digests", f"oci-archive:{archive}", f"containers-storage:{image}")
    if loaded.returncode != 0:
        raise TransferFailed(f"The image could not be loaded: {loaded.stderr.decode(errors='replace').strip()}")
    software.registry_state = RegistryState.PENDING
    try:
        with transaction.atomic():
            software.save()
    except IntegrityError:
        raise Conflict(f"There is already software called {software.reference} here.") from None
    notify(PUSHER)  # copied to the platform's registry for other machines, as any local image
    return software
