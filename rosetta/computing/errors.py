"""What can go wrong on a computing resource, split by what the controller should do about it.

``Unreachable``: the resource did not answer (timed out, connection lost, engine busy). The
controller retries with backoff and says so in the task's events. ``Refused``: the resource
answered no (the image does not exist, the engine rejected the container). The task fails
with a reason a scientist understands; the engine's raw words are kept as ``detail`` for
the operator.
"""

from rosetta.core.errors import Conflict


class ComputingError(Exception):
    transient = False

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def explain(self, resource: str) -> str:
        """The plain-language reason, said of the resource ``resource``."""
        return str(self)


class Unreachable(ComputingError):
    transient = True


class CutShort(Unreachable):
    """The engine gave up a launch half-way for a passing reason (another podman held the image
    store's mounts): what it made is removed, and the start is tried again from scratch."""


class Refused(ComputingError):
    pass


class ImageMissing(Refused):
    def __init__(self, image: str, detail: str = "") -> None:
        super().__init__(f"Image {image} does not exist.", detail)
        self.image = image

    def explain(self, resource: str) -> str:
        return f"Image {self.image} does not exist on {resource}."


class AccountRefused(Refused, Conflict):
    """The platform will not log in to a user's own account for them: another Rosetta user holds
    that account's name too. A 409 where a user asks; the tasks concerned are told."""
