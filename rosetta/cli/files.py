"""`rosetta files ...`: the files of your storages, from the command line.

Remote paths are written STORAGE:PATH (``home:data/run1.fits``; ``home:`` is the storage's
root). Transfers stream both ways, with a progress bar on a terminal for large ones.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import click
import h11
import httpx

from rosetta.cli.client import ApiError, Client, _detail
from rosetta.core.paths import inherited_umask

CHUNK = 1024 * 1024
PROGRESS_FROM = 8 * 1024 * 1024  # bytes: smaller transfers finish before a bar is worth drawing
progress_option = click.option(
    "--progress/--no-progress", default=None, help="Show a progress bar (default: on a terminal, for large files)."
)


def _split(remote: str) -> tuple[str, str]:
    storage, colon, path = remote.partition(":")
    if not colon or not storage:
        raise click.BadParameter(f"{remote!r} is not STORAGE:PATH (for example home:data/file.txt).")
    return storage, path.lstrip("/")  # the storage's root is where paths start


def _base(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if folder.strip("/") else name


@click.group("files")
def files_group():
    """Browse, download, upload and organise the files of your storages."""


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


@files_group.command("ls")
@click.argument("remote", required=False)
@click.option("-a", "--all", "show_hidden", is_flag=True, help="Show names starting with a dot too.")
def ls(remote, show_hidden):
    """List a folder (STORAGE:PATH), or with no argument the storages you may use."""
    client = Client()
    if remote is None:
        for storage in client.request("GET", "/storages"):
            flags = ", ".join(filter(None, [storage["kind"], "read-only" if storage["read_only"] else ""]))
            click.echo(f"{storage['name']:<20} {flags:<18} tasks: {storage['mount_point']}  {storage['description']}")
        return
    storage, path = _split(remote)
    listing = client.request("GET", f"/storages/{storage}/entries", params={"path": path})
    for entry in sorted(listing["entries"], key=lambda e: (e["kind"] != "folder", e["name"])):
        if entry["name"].startswith(".") and not show_hidden:
            continue
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["modified"]))
        size = "" if entry["kind"] != "file" else _size(entry["size"])
        name = entry["name"] + ("/" if entry["kind"] == "folder" else "")
        if entry["kind"] == "link":
            name += f" -> {entry['target']}"
        click.echo(f"{size:>10}  {when}  {name}")


def _bar(total: int | None, label: str, progress: bool | None):
    show = progress if progress is not None else (sys.stderr.isatty() and (total or 0) >= PROGRESS_FROM)
    if not show:
        return None
    return click.progressbar(length=total or 0, label=label, file=sys.stderr, show_pos=False, show_percent=True)


@files_group.command("get")
@click.argument("remote")
@click.argument("local", required=False, type=click.Path(dir_okay=True, path_type=Path))
@progress_option
def get(remote, local, progress):
    """Download a file (a folder comes as a .zip) to LOCAL (default: here, same name; - for stdout)."""
    client = Client()
    storage, path = _split(remote)
    entry = client.request("GET", f"/storages/{storage}/stat", params={"path": path})
    name = (_base(path) or storage) + (".zip" if entry["kind"] == "folder" else "")
    to_stdout = str(local) == "-"
    target = None if to_stdout else (local / name if local and local.is_dir() else local or Path(name))
    bar = _bar(entry["size"] if entry["kind"] == "file" else None, name, progress)
    temporary, out = (None, sys.stdout.buffer) if target is None else _temporary_beside(target)
    try:
        for chunk in client.stream(f"/storages/{storage}/content", path=path):
            out.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if temporary is not None:
            out.close()
            os.replace(temporary, target)  # complete, or not there at all
    finally:
        if bar is not None:
            bar.render_finish()
        if temporary is not None and temporary.exists():
            out.close()
            temporary.unlink()
    if target is not None:
        click.echo(f"{remote} -> {target}", err=True)


def _temporary_beside(target: Path) -> tuple[Path, BinaryIO]:
    """A new file next to ``target`` (renamed to it once complete), open for writing, with the mode a
    file the user creates gets: 0666 less their umask. Made with O_EXCL, so nothing already there
    (a link, say) is written through."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as error:
        raise click.ClickException(f"Cannot write in {target.parent}: {error.strerror}.") from None
    try:
        os.fchmod(fd, 0o666 & ~inherited_umask())  # mkstemp makes it 0600, whatever the umask
    except OSError:
        os.close(fd)
        os.unlink(name)
        raise
    return Path(name), os.fdopen(fd, "wb")


def _read(path: Path, bar) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            if bar is not None:
                bar.update(len(chunk))
            yield chunk


def _upload(client: Client, storage: str, path: str, local: Path, progress: bool | None, overwrite: bool) -> None:
    found = local.stat()
    regular = stat.S_ISREG(found.st_mode)  # else a pipe or device: sent chunked, its size unknown
    bar = _bar(found.st_size if regular else None, local.name, progress)
    headers = {"Content-Type": "application/octet-stream"}
    if regular:
        headers["Content-Length"] = str(found.st_size)
    try:
        response = client.http.put(
            f"/storages/{storage}/content",
            params={"path": path, "overwrite": str(overwrite).lower()},
            content=_read(local, bar),
            headers=headers,
            timeout=httpx.Timeout(30, write=None, read=None),
        )
    except (httpx.HTTPError, h11.LocalProtocolError) as error:  # the file changed size while sent
        raise ApiError(0, f"The upload of {local} failed: {error}") from error
    finally:
        if bar is not None:
            bar.render_finish()
    if response.status_code >= 400:
        raise ApiError(response.status_code, _detail(response))


@files_group.command("put")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("remote")
@click.option("-n", "--no-clobber", is_flag=True, help="Do not replace files that exist.")
@progress_option
def put(sources, remote, no_clobber, progress):
    """Upload files or folders (recursively) to STORAGE:PATH. Into a folder when PATH is one
    (or ends with /, or several sources are given); else PATH is the new file's name."""
    client = Client()
    storage, path = _split(remote)
    exists = path.strip("/") == "" or _is_folder(client, storage, path)
    into = exists or path.endswith("/") or len(sources) > 1
    if into and not exists:
        client.request("POST", f"/storages/{storage}/folders", json={"path": path})
    for source in sources:
        target = _join(path, source.name) if into else path
        if source.is_dir():
            _put_tree(client, storage, source, target, progress, not no_clobber)
        else:
            _upload(client, storage, target, source, progress, not no_clobber)
        click.echo(f"{source} -> {storage}:{target}", err=True)


def _is_folder(client: Client, storage: str, path: str) -> bool:
    try:
        return client.request("GET", f"/storages/{storage}/stat", params={"path": path})["kind"] == "folder"
    except ApiError as error:
        if error.status == 404:
            return False
        raise


def _put_tree(client, storage, source: Path, target: str, progress, overwrite) -> None:
    if not _is_folder(client, storage, target):
        client.request("POST", f"/storages/{storage}/folders", json={"path": target})
    for child in sorted(source.iterdir()):
        if child.is_symlink():
            continue  # links are not followed, here as on the platform
        if child.is_dir():
            _put_tree(client, storage, child, _join(target, child.name), progress, overwrite)
        elif child.is_file():
            _upload(client, storage, _join(target, child.name), child, progress, overwrite)


@files_group.command("mkdir")
@click.argument("remote")
def mkdir(remote):
    """Create a folder."""
    storage, path = _split(remote)
    click.echo(Client().request("POST", f"/storages/{storage}/folders", json={"path": path})["detail"])


def _two(verb: str, source: str, destination: str) -> None:
    client = Client()
    storage, from_path = _split(source)
    other, to_path = _split(destination)
    if other != storage:
        raise click.ClickException(f"{verb} works within one storage; use get and put between storages.")
    if to_path == "" or to_path.endswith("/") or _is_folder(client, storage, to_path):
        to_path = _join(to_path, _base(from_path))
    answer = client.request("POST", f"/storages/{storage}/{verb}", json={"source": from_path, "destination": to_path})
    click.echo(answer["detail"])


@files_group.command("mv")
@click.argument("source")
@click.argument("destination")
def mv(source, destination):
    """Rename or move (into DESTINATION when it is a folder)."""
    _two("move", source, destination)


@files_group.command("cp")
@click.argument("source")
@click.argument("destination")
def cp(source, destination):
    """Copy a file or folder (into DESTINATION when it is a folder)."""
    _two("copy", source, destination)


@files_group.command("rm")
@click.argument("remotes", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Remove folders with everything in them.")
def rm(remotes, recursive):
    """Delete files (and with -r, folders)."""
    client = Client()
    for remote in remotes:
        storage, path = _split(remote)
        if not recursive and _is_folder(client, storage, path):
            raise click.ClickException(f"{remote} is a folder: use rm -r to delete it with its contents.")
        click.echo(client.request("DELETE", f"/storages/{storage}/entries", params={"path": path})["detail"])
