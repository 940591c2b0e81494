"""What can go wrong with a file, each a clear 4xx for the API, the pages and the CLI."""

from rosetta.core.errors import Conflict, NotFound


class FileProblem(Exception):
    """The request names a path or asks an operation the storage refuses."""

    status = 400


class PathRefused(FileProblem):
    """400: the path leaves the storage, or is not a path at all (NUL, over-long, ``..``)."""


class TooLargeToPreview(FileProblem):
    """413: the file, or what its headers declare, is beyond what a preview may decode."""

    status = 413


class ReadOnly(FileProblem):
    """403: the storage is read-only."""

    status = 403


class NoSuchFile(NotFound):
    """404: nothing there (or nothing the user may know of)."""


class AlreadyExists(Conflict):
    """409: the destination is taken."""


class StorageFull(FileProblem):
    """507: no space left (or the quota is used up)."""

    status = 507


class StorageUnreachable(FileProblem):
    """503: the machine behind a remote storage does not answer."""

    status = 503


class NoIdRange(FileProblem):
    """503: this machine has no range of host ids for the user's files (rosetta.storage.ids)."""

    status = 503
