"""The API of storages: which a user may use, and their files — listed, downloaded (folders
as a zip made while it is sent), uploaded as the body arrives, and organised. Paths are
relative to the storage's root (see rosetta.storage.paths)."""

from __future__ import annotations

import mimetypes
from typing import Literal

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from ninja import Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from rosetta.api.schemas import InSchema, Message
from rosetta.storage import preview, services
from rosetta.storage.archive import zip_folder
from rosetta.storage.errors import PathRefused
from rosetta.storage.files import Entry, Files
from rosetta.storage.local import UPLOAD_PREFIX
from rosetta.storage.paths import joined, name_of, parts
from rosetta.storage.services import files_of, get_storage, storages_of
from rosetta.storage.sftp import may_meet
from rosetta.storage.streaming import body_of, counted_download

router = Router(tags=["files"])

# Shown in the browser (previews); anything else is only ever downloaded. Never HTML or SVG:
# a user's file must not run as a page of the platform's origin.
INLINE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"}
_CONTENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
    "Cache-Control": "no-store",
}


class StorageOut(Schema):
    name: str
    description: str
    kind: str
    resource: str | None = Field(None, description="SFTP: the resource whose connection reaches it.")
    read_only: bool
    mount_point: str = Field(..., description="Where tasks see it.")
    mountable_on: list[str] = Field(..., description="Resources whose tasks can mount it.")
    per_user: bool = Field(..., description="Each user has a folder of their own in it.")

    @staticmethod
    def resolve_resource(storage) -> str | None:
        return storage.resource.name if storage.resource else None

    @staticmethod
    def resolve_mount_point(storage) -> str:
        return storage.target

    @staticmethod
    def resolve_mountable_on(storage) -> list[str]:
        return [resource.name for resource in storage.mountable_on.all()]


class EntryOut(Schema):
    name: str
    kind: str = Field(..., description="file | folder | link | other")
    size: int
    modified: float = Field(..., description="Seconds since the epoch.")
    target: str = Field("", description="Where a symbolic link points (never followed).")


class ListingOut(Schema):
    storage: str
    path: str
    read_only: bool
    entries: list[EntryOut]


class PathIn(InSchema):
    path: str = Field(..., max_length=8192)


class TwoPathsIn(InSchema):
    source: str = Field(..., max_length=8192)
    destination: str = Field(..., max_length=8192)


class StorageIn(InSchema):
    name: str = Field(..., max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = Field("", max_length=2000)
    kind: Literal["local", "sftp"] = "local"
    resource: str | None = Field(None, description="SFTP: the resource (reached over SSH) that holds it.")
    base_path: str = Field(..., max_length=1024, description="Absolute; {username} becomes each user's name.")
    read_only: bool = False
    users: list[str] = Field(default_factory=list, description="Who may use it (with groups; both empty: everyone).")
    groups: list[str] = Field(default_factory=list)
    mount_point: str = Field("", max_length=255, description="Where tasks see it (default /storage/NAME).")
    mountable_on: list[str] = Field(default_factory=list, description="Resources whose tasks may mount it.")
    mounted_by_default: bool = True


async def _files(request: HttpRequest, name: str) -> Files:
    def find() -> Files:
        return files_of(get_storage(request.auth, name), request.auth)

    return await sync_to_async(find)()


def _entry(entry: Entry) -> dict:
    return {"name": entry.name, "kind": entry.kind, "size": entry.size, "modified": entry.modified,
            "target": entry.target}  # fmt: skip


@router.get("/storages", response=list[StorageOut])
def list_storages(request: HttpRequest):
    """The storages you may use."""
    return storages_of(request.auth).prefetch_related("mountable_on")


@router.post("/storages", response={201: StorageOut, 400: Message, 403: Message, 409: Message})
def add_storage(request: HttpRequest, payload: StorageIn):
    """Add a storage (staff)."""
    if not request.auth.is_staff:
        raise HttpError(403, "Only staff may add storages.")
    _apart_from_the_platforms_folders(payload)
    return 201, services.save_storage(**payload.dict())


def _apart_from_the_platforms_folders(payload: StorageIn) -> None:
    """Refuse a storage whose users' folders could be inside, be, or hold the platform's own
    folder (task files, secrets, job scripts) on a machine it is served or mounted on, where
    the paths tell: work directories given relative to the account's home are checked when
    the storage is used."""
    from rosetta.computing.models import Resource
    from rosetta.core.paths import home

    names = {*payload.mountable_on, *([payload.resource] if payload.resource else [])}
    folders = [(resource.name, resource.work_dir) for resource in Resource.objects.filter(name__in=names)
               if resource.transport == "ssh" and resource.work_dir.startswith("/")]  # fmt: skip
    if payload.kind == "local":
        folders.append(("this machine", str(home() / "work")))
    for where, folder in folders:
        if may_meet(payload.base_path, folder):
            raise ValidationError(
                f"A user's folder of this storage could be, hold or be inside the platform's own folder on "
                f"{where} ({folder}: task files and secrets). Choose a base path apart from it."
            )


@router.delete("/storages/{name}", response={200: Message, 403: Message, 404: Message})
def remove_storage(request: HttpRequest, name: str):
    """Forget a storage (staff); its files stay where they are."""
    if not request.auth.is_staff:
        raise HttpError(403, "Only staff may remove storages.")
    get_storage(request.auth, name).delete()
    return {"detail": f"Storage {name} removed; its files were left in place."}


@router.get("/storages/{name}/entries", response={200: ListingOut, 400: Message, 404: Message})
async def list_folder(request: HttpRequest, name: str, path: str = ""):
    """A folder's entries (`path` empty: the storage's root)."""
    files = await _files(request, name)
    found = parts(path)
    entries = [entry for entry in await files.list(found) if not entry.name.startswith(UPLOAD_PREFIX)]  # in flight
    return {
        "storage": name,
        "path": joined(found),
        "read_only": files.read_only,
        "entries": [_entry(e) for e in entries],
    }


@router.get("/storages/{name}/stat", response={200: EntryOut, 400: Message, 404: Message})
async def stat_path(request: HttpRequest, name: str, path: str = ""):
    files = await _files(request, name)
    return _entry(await files.stat(parts(path)))


@router.get(
    "/storages/{name}/content",
    response={200: None, 400: Message, 404: Message},
    openapi_extra={"responses": {200: {"description": "The file, or a folder as a zip archive, streamed."}}},
)
async def download(request: HttpRequest, name: str, path: str = "", inline: bool = False):
    """Download a file (sent as it is read), or a folder as a zip archive made while it is sent.
    `inline=true` shows images and plain text in the browser; everything else is an attachment."""
    files = await _files(request, name)
    found = parts(path)
    entry = await files.stat(found)
    if entry.kind == "folder":
        filename = f"{found[-1] if found else name}.zip"
        response = StreamingHttpResponse(counted_download(zip_folder(files, found)), content_type="application/zip")
        response["Content-Disposition"] = content_disposition_header(True, filename)
    elif entry.kind == "file":
        entry, content = await files.open(found)  # the size of the file opened, not of the one looked at
        kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
        shown = inline and kind in INLINE_TYPES
        response = StreamingHttpResponse(
            counted_download(content), content_type=f"{kind}; charset=utf-8" if kind == "text/plain" else kind
        )
        response["Content-Length"] = str(entry.size)
        response["Content-Disposition"] = content_disposition_header(not shown, entry.name)
        if not shown:
            response["Content-Type"] = "application/octet-stream" if kind not in INLINE_TYPES else kind
    elif entry.kind == "link":
        raise PathRefused(f"{joined(found)!r} is a symbolic link: Rosetta does not follow links.")
    else:
        raise PathRefused(f"{joined(found)!r} is not a file or folder: it cannot be downloaded.")
    for header, value in _CONTENT_HEADERS.items():
        response[header] = value
    return response


@router.put(
    "/storages/{name}/content",
    response={201: EntryOut, 400: Message, 403: Message, 404: Message, 409: Message},
    openapi_extra={
        "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
async def upload(request: HttpRequest, name: str, path: str, overwrite: bool = False):
    """Upload the request's body as the file `path`, streamed to the storage as it arrives: it
    appears under its name only once complete. An existing file is replaced only with
    `overwrite=true`: without it, a name taken before the upload is refused before the body
    is read, and one taken while it was on (another upload) is not replaced either."""
    files = await _files(request, name)
    files.writable()
    found = parts(path)
    name_of(path)
    body = body_of(request)
    try:
        entry = await files.write(found, aiter(body), overwrite=overwrite)
    except ConnectionAbortedError:
        return HttpResponse(status=400)  # nobody is listening any more; nothing was kept
    return 201, _entry(entry)


@router.post(
    "/storages/{name}/folders", response={201: Message, 400: Message, 403: Message, 404: Message, 409: Message}
)
async def make_folder(request: HttpRequest, name: str, payload: PathIn):
    files = await _files(request, name)
    found = parts(payload.path)
    name_of(payload.path)
    await files.mkdir(found)
    return 201, {"detail": f"Created {joined(found)}."}


@router.post("/storages/{name}/move", response={200: Message, 400: Message, 403: Message, 404: Message, 409: Message})
async def move(request: HttpRequest, name: str, payload: TwoPathsIn):
    """Rename or move a file or folder; the destination (a full path) must not exist."""
    files = await _files(request, name)
    name_of(payload.source), name_of(payload.destination)
    await files.move(parts(payload.source), parts(payload.destination))
    return {"detail": f"Moved {joined(parts(payload.source))} to {joined(parts(payload.destination))}."}


@router.post("/storages/{name}/copy", response={201: Message, 400: Message, 403: Message, 404: Message, 409: Message})
async def copy(request: HttpRequest, name: str, payload: TwoPathsIn):
    """Copy a file or a whole folder; the destination (a full path) must not exist."""
    files = await _files(request, name)
    name_of(payload.source), name_of(payload.destination)
    await files.copy(parts(payload.source), parts(payload.destination))
    return 201, {"detail": f"Copied {joined(parts(payload.source))} to {joined(parts(payload.destination))}."}


@router.delete("/storages/{name}/entries", response={200: Message, 400: Message, 403: Message, 404: Message})
async def remove(request: HttpRequest, name: str, path: str):
    """Delete a file, a link, or a folder with everything in it."""
    files = await _files(request, name)
    found = parts(path)
    name_of(path)
    await files.remove(found)
    return {"detail": f"Deleted {joined(found)}."}


@router.get(
    "/storages/{name}/fits", response={200: dict, 400: Message, 404: Message, 413: Message, 422: Message, 503: Message}
)
async def fits_header(request: HttpRequest, name: str, path: str):
    """A FITS file's HDUs: name, kind, shape, whether it is an image, and the header as text.
    Previews are made in a sandbox with bounded memory and time, two at a time: a file beyond
    what they may decode gets 413 (over 512 MiB, 1,000 HDUs or 8 MiB of headers), one they
    could not read within it 422, and 503 comes after 10 s spent waiting for a turn."""
    files = await _files(request, name)
    return {"hdus": await preview.fits_hdus(files, parts(path))}


@router.get(
    "/storages/{name}/fits.png",
    response={200: None, 400: Message, 404: Message, 413: Message, 422: Message, 503: Message},
    openapi_extra={
        "responses": {200: {"description": "The image, zscale-scaled, as PNG.", "content": {"image/png": {}}}}
    },
)
async def fits_image(request: HttpRequest, name: str, path: str, hdu: int | None = None):
    """A FITS image (the first image HDU, or `hdu`) drawn as a PNG, with zscale limits. In the
    same sandbox as `fits`: 413 also for a plane over 2^27 pixels or compression tiles over
    2^24 (each is decompressed whole)."""
    files = await _files(request, name)
    png = await preview.fits_png(files, parts(path), hdu)
    response = HttpResponse(png, content_type="image/png")
    for header, value in _CONTENT_HEADERS.items():
        response[header] = value
    return response
