"""What a user's Containerfile may ask of this machine's podman, checked before it is queued.

The build itself runs with ``--pull=never`` on a network the task firewall fences in (see
rosetta.builds), so this is the first of two lines: it explains in plain words what
the second would refuse less clearly, and it finds the images to pull beforehand. Images come
from the registries the operator allows, like any image (rosetta.catalog.registries); a URL
``ADD`` would be fetched by podman itself, from this machine and outside any fence, so it is
refused: download in a ``RUN`` step instead.

The file is read as buildah reads it (``logical_lines``), and what could make the two readings
differ is refused: an ``escape`` directive (it changes which lines continue), and instruction
names buildah does not know. ``ONBUILD`` instructions are checked as if they ran now (they run
in builds FROM the image, which see only their own Containerfile). ``# syntax=`` is a comment
to buildah: no frontend is fetched.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable

from django.core.exceptions import ValidationError

from rosetta.catalog.registries import check_registry
from rosetta.core.validation import validate_image_reference

MAX_CONTAINERFILE = 64 * 1024
FROM_FLAG = re.compile(r"^--[a-z-]+=\S*$")
INSTRUCTIONS = frozenset(
    {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL", "MAINTAINER",
     "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)  # fmt: skip
CONTINUED = re.compile(r"\\[ \t]*$")  # as buildah's parser has it: blanks after the backslash, no others
ESCAPE_DIRECTIVE = re.compile(r"^#[ \t]*escape[ \t]*=[ \t]*(.?)", re.IGNORECASE)
NOT_IN_ONBUILD = frozenset({"FROM", "ONBUILD", "MAINTAINER"})


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions as buildah reads them (openshift/imagebuilder's parser): (line number, text).

    Lines end at a newline only (a carriage return before it is dropped, and a byte-order mark
    before the first); an instruction's first line is read without its leading blanks, and a
    line continues when it ends with a backslash (blanks or tabs after it allowed). The lines
    that continue it are joined as they are, leading blanks kept; comment and blank lines among
    them are left out. Where this reading could still differ from buildah's, it sees more
    instructions, not fewer: an instruction name it does not know is refused
    (``source_images``), so nothing buildah would run goes unchecked."""
    lines: list[tuple[int, str]] = []
    joined, start, continuing = "", 0, False
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if continuing:
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue  # an empty continuation line, or a comment among the continued lines
            part = raw
        else:
            part = raw.lstrip()
            if not part or part.startswith("#"):
                continue
            start = number
        continued = CONTINUED.search(part)
        continuing = continued is not None
        joined += part[: continued.start()] if continued else part
        if not continuing:
            lines.append((start, joined.strip()))
            joined = ""
    if continuing and joined.strip():  # continued past the end: buildah takes what there is
        lines.append((start, joined.strip()))
    return lines


def _check_directives(text: str) -> None:
    """An ``escape`` directive would change how buildah reads every line after it."""
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        directive = ESCAPE_DIRECTIVE.match(raw.strip())
        if directive and directive[1] != "\\":
            raise ValidationError(
                f"Line {number}: the escape directive is not supported here; continue lines with a backslash (\\)."
            )


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
    _check_directives(text)
    stages: set[str] = set()
    images: list[str] = []
    saw_from = False
    for number, line in logical_lines(text):
        instruction, rest = _instruction(number, line)
        if instruction == "FROM":
            saw_from = True
            image, alias = _from(number, rest.split())
            if image.lower() != "scratch" and image not in stages:
                images.append(_allowed_image(number, image, may_use))
            if alias:
                stages.add(alias)
            continue
        if not saw_from and instruction != "ARG":
            raise ValidationError(f"Line {number}: the first instruction must be FROM.")
        if instruction == "ONBUILD":  # what an image built FROM this one would run: checked now
            instruction, rest = _instruction(number, rest)
            if instruction in NOT_IN_ONBUILD:
                raise ValidationError(f"Line {number}: ONBUILD {instruction} is not allowed.")
            for source in _sources(number, instruction, rest, stages):
                _allowed_image(number, source, may_use)
            continue
        images += [_allowed_image(number, source, may_use) for source in _sources(number, instruction, rest, stages)]
    if not saw_from:
        raise ValidationError("The Containerfile has no FROM line.")
    return sorted(set(images))


def _instruction(number: int, line: str) -> tuple[str, str]:
    """The instruction's name (upper case) and the rest, split at any blank (a tab too, as buildah
    does); a name buildah does not know is refused (it would ignore the line)."""
    parts = line.split(maxsplit=1)
    if not parts:
        raise ValidationError(f"Line {number}: ONBUILD needs an instruction.")
    name, rest = parts[0], (parts[1] if len(parts) > 1 else "")
    if name.upper() not in INSTRUCTIONS:
        raise ValidationError(f"Line {number}: {name[:40]!r} is not an instruction of a Containerfile.")
    return name.upper(), rest


def _sources(number: int, instruction: str, rest: str, stages: set[str]) -> list[str]:
    """The images an instruction copies from (COPY/ADD --from, RUN --mount=...,from=), not
    counting earlier stages; an ADD from a URL is refused."""
    if instruction == "ADD":
        _check_add(number, rest)
    if instruction not in ("COPY", "ADD", "RUN"):
        return []
    return [source for source in _from_options(rest.split()) if source not in stages and not source.isdigit()]


def _check_add(number: int, rest: str) -> None:
    """ADD fetches URLs (and expands variables, quotes and escapes in what it is given first)."""
    sources = rest[re.match(r"(?:\s*--\S+)*\s*", rest).end() :]  # past its options
    words = sources.split()
    if sources.startswith("["):
        try:
            parsed = json.loads(sources)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            words += [str(item) for item in parsed]
    for word in words:
        if "$" in word:
            raise ValidationError(f"Line {number}: write ADD's sources in full ({word[:60]!r} uses a variable).")
        if _is_url(_unquoted(word)):
            raise ValidationError(
                f"Line {number}: ADD from a URL is not allowed here; download it in a RUN step (curl, wget)."
            )


def _from(number: int, words: list[str]) -> tuple[str, str | None]:
    words = [word for word in words if not FROM_FLAG.match(word)]  # --platform=...
    if len(words) == 3 and words[1].lower() == "as":
        return words[0], words[2]
    if len(words) == 1:
        return words[0], None
    raise ValidationError(f"Line {number}: expected FROM IMAGE [AS NAME].")


def _from_options(words: list[str]) -> list[str]:
    """Images named by COPY/ADD --from=X and RUN --mount=...,from=X. A mount's options are read
    both split at commas and as CSV (quotes allowed), keys in any case: whichever way buildah
    reads them, every image they could name is among these."""
    sources = []
    for index, word in enumerate(words):
        word = _unquoted(word)  # buildah reads `--fr"om"=x` as --from=x
        flag, equals, value = word.partition("=")
        if flag.lower() == "--from":
            sources.append(value if equals else (_unquoted(words[index + 1]) if index + 1 < len(words) else ""))
        elif flag.lower() == "--mount":
            options = value
            for part in [*options.split(","), *next(csv.reader([options]), [])]:
                key, _, value = part.partition("=")
                if key.strip().strip("\"'").lower() == "from" and value:
                    sources.append(value.strip())
    return sources


def _unquoted(word: str) -> str:
    """A word as a shell reads it, as near as matters here: without its quotes and escapes."""
    return re.sub(r"[\\\"']", "", word)


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
