"""What a user's Containerfile may ask of this machine's podman, checked before it is queued.

The build itself runs with ``--pull=never`` on a network the task firewall fences in (see
rosetta.catalog.builder), so this is the first of two lines: it explains in plain words what
the second would refuse less clearly, and it finds the images to pull beforehand. Images come
from the registries the operator allows, like any image (rosetta.catalog.registries); a URL
``ADD`` would be fetched by podman itself, from this machine and outside any fence, so it is
refused: download in a ``RUN`` step instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.core.exceptions import ValidationError

from rosetta.catalog.registries import check_registry
from rosetta.core.validation import validate_image_reference

MAX_CONTAINERFILE = 64 * 1024
FROM_FLAG = re.compile(r"^--[a-z-]+=\S*$")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with their continuation lines joined, comments and blanks left out: (line number, text)."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not pending and not stripped):
            continue  # comments are left out inside continued instructions too, as podman does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append((start, pending + stripped))
        pending = ""
    if pending.strip():
        lines.append((start, pending))
    return lines


MayUse = Callable[[str], None]  # raises a ValidationError for an image the build's owner may not use


def check_containerfile(text: str, may_use: MayUse | None = None) -> list[str]:
    """Raise a ValidationError naming the line of the first problem (``may_use`` says which
    images the build's owner may use besides); else the images it is built FROM (or copies from)
    that come from another registry than this machine's store, to pull first."""
    return [image for image in source_images(text, may_use) if not image.startswith("localhost/")]


def source_images(text: str, may_use: MayUse | None = None) -> list[str]:
    """Every image the Containerfile is built FROM or copies from, checked as ``check_containerfile`` does."""
    if not text.strip():
        raise ValidationError("The Containerfile is empty.")
    if len(text.encode()) > MAX_CONTAINERFILE:
        raise ValidationError(f"The Containerfile is larger than {MAX_CONTAINERFILE // 1024} KiB.")
    if "\x00" in text:
        raise ValidationError("The Containerfile is not text.")
    stages: set[str] = set()
    images: list[str] = []
    saw_from = False
    for number, line in logical_lines(text):
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        words = rest.split()
        if instruction == "FROM":
            saw_from = True
            image, alias = _from(number, words)
            if image.lower() != "scratch" and image not in stages:
                images.append(_allowed_image(number, image, may_use))
            if alias:
                stages.add(alias)
        elif not saw_from and instruction != "ARG":
            raise ValidationError(f"Line {number}: the first instruction must be FROM.")
        elif instruction == "ADD" and any(_is_url(word) for word in words if not word.startswith("--")):
            raise ValidationError(
                f"Line {number}: ADD from a URL is not allowed here; download it in a RUN step (curl, wget)."
            )
        if instruction in ("COPY", "ADD", "RUN"):
            for source in _from_options(words):
                if source not in stages and not source.isdigit():
                    images.append(_allowed_image(number, source, may_use))
    if not saw_from:
        raise ValidationError("The Containerfile has no FROM line.")
    return sorted(set(images))


def _from(number: int, words: list[str]) -> tuple[str, str | None]:
    words = [word for word in words if not FROM_FLAG.match(word)]  # --platform=...
    if len(words) == 3 and words[1].lower() == "as":
        return words[0], words[2]
    if len(words) == 1:
        return words[0], None
    raise ValidationError(f"Line {number}: expected FROM IMAGE [AS NAME].")


def _from_options(words: list[str]) -> list[str]:
    """Images named by COPY/ADD --from=X and RUN --mount=...,from=X."""
    sources = []
    for word in words:
        if word.startswith("--from="):
            sources.append(word.removeprefix("--from="))
        elif word.startswith("--mount="):
            for part in word.removeprefix("--mount=").split(","):
                key, _, value = part.partition("=")
                if key == "from" and value:
                    sources.append(value)
    return sources


def _allowed_image(number: int, image: str, may_use: MayUse | None) -> str:
    if "$" in image:
        raise ValidationError(f"Line {number}: write the image's name in full ({image[:60]!r} uses a variable).")
    try:
        validate_image_reference(image)
        check_registry(image)
        if may_use is not None:
            may_use(image)
    except ValidationError as error:
        raise ValidationError(f"Line {number}: {' '.join(error.messages)}") from None
    return image


def _is_url(word: str) -> bool:
    return "://" in word or word.startswith("git@")
