"""Paths inside a storage, as users give them: checked before anything touches a file.

A path is relative to the storage's root: components separated by ``/``; empty and ``.``
components are dropped. Refused with a clear reason: an absolute path, ``..``, a NUL byte, a
name longer than the file system allows, a path longer than PATH_MAX. What these checks cannot
see — symbolic links on the way, made by anyone, a task included — is the backends' to refuse
as they resolve (rosetta.storage.local opens each directory with O_NOFOLLOW).
"""

from __future__ import annotations

from rosetta.storage.errors import PathRefused

NAME_MAX = 255  # bytes in one file name (ext4, xfs, most POSIX file systems)
PATH_MAX = 4096  # bytes in a whole path


def parts(path: str) -> tuple[str, ...]:
    """The components of ``path`` inside its storage (``()`` is the root)."""
    if "\x00" in path:
        raise PathRefused("A path may not contain a NUL byte.")
    if path.startswith("/"):
        raise PathRefused(f"{_shown(path)} is absolute: give a path inside the storage, such as data/file.txt.")
    if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise PathRefused(f"The path is longer than {PATH_MAX} bytes.")
    found = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise PathRefused(f"{_shown(path)} leaves its folder (..): paths stay inside their storage.")
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise PathRefused(f"The name {_shown(part[:40])}… is longer than {NAME_MAX} bytes.")
        found.append(part)
    return tuple(found)


def name_of(path: str) -> tuple[tuple[str, ...], str]:
    """(parent components, last name) of a path that must name something (not the root)."""
    found = parts(path)
    if not found:
        raise PathRefused("This needs a file or folder name, not the storage's root.")
    return found[:-1], found[-1]


def joined(found: tuple[str, ...]) -> str:
    return "/".join(found)


def _shown(text: str) -> str:
    return repr(text[:200])
