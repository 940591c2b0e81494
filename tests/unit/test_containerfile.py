"""What a user's Containerfile may ask of this machine's podman (rosetta.catalog.containerfile)."""

import pytest
from django.core.exceptions import ValidationError

from rosetta.builds.commands import plain_error
from rosetta.catalog.containerfile import check_containerfile, logical_lines


def test_images_from_allowed_registries_and_stages(settings):
    settings.ALLOWED_REGISTRIES = ["localhost", "registry.example.org"]
    text = """\
# syntax is ignored
ARG VERSION=1
FROM --platform=linux/amd64 registry.example.org/lab/base:1 AS build
RUN --mount=type=cache,target=/root/.cache \\
    make
FROM localhost/rosetta/base
COPY --from=build /out /opt/out
COPY --from=registry.example.org/lab/tools:2 /bin/tool /usr/local/bin/
RUN --mount=type=bind,from=build,source=/out,target=/mnt true
"""
    # Only what comes from another registry is pulled beforehand; this machine's images are here.
    assert check_containerfile(text) == ["registry.example.org/lab/base:1", "registry.example.org/lab/tools:2"]
    assert check_containerfile("FROM scratch\nCOPY Containerfile /\n") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("RUN true\n", "Line 1: the first instruction must be FROM"),
        ("# only a comment\n", "no FROM line"),
        ("FROM debian:12\n", "Line 1: 'debian:12' names no registry"),
        ("FROM 127.0.0.1:6379/x\n", "Line 1: Images from 127.0.0.1:6379 are not allowed here"),
        ("ARG IMAGE=x\nFROM $IMAGE\n", "Line 2: write the image's name in full"),
        ("FROM localhost/x\nADD https://example.org/f.tgz /\n", "Line 2: ADD from a URL is not allowed"),
        ('FROM localhost/x\nADD ["http://10.0.0.1/", "/x"]\n', "Line 2: ADD from a URL"),
        ("FROM localhost/x\nADD git@example.org:a/b.git /src\n", "Line 2: ADD from a URL"),
        ("FROM localhost/x\nCOPY --from=127.0.0.1:22/x / /\n", "Line 2: Images from 127.0.0.1:22"),
        ("FROM localhost/x\n\nRUN --mount=type=bind,from=10.0.0.1:80/y,target=/m true\n", "Line 3: Images from"),
        ("FROM localhost/x AS\n", "Line 1: expected FROM IMAGE [AS NAME]"),
        ("FROM localhost/x\n" + "#" * 70000, "larger than 64 KiB"),
        # What buildah would read otherwise than a line-by-line look suggests.
        ("# escape=`\nFROM localhost/x\nRUN echo \\\nADD http://10.0.0.1/ /x\n", "Line 1: the escape directive"),
        ("\ufeff#ESCAPE = `\nFROM localhost/x\n", "Line 1: the escape directive is not supported"),
        ("FROM localhost/x\nADD\thttp://10.0.0.1/ /x\n", "Line 2: ADD from a URL"),
        ("FROM localhost/x\nadd http://10.0.0.1/ /x\n", "Line 2: ADD from a URL"),
        ("FROM localhost/x\nADD \\\n\nhttp://10.0.0.1/ /x\n", "Line 2: ADD from a URL"),
        ("FROM localhost/x\nADD http:/\\\n/10.0.0.1/ /x\n", "Line 2: ADD from a URL"),
        ('FROM localhost/x\nADD "http://10.0.0.1/" /x\n', "Line 2: ADD from a URL"),
        ("FROM localhost/x\nADD http:\\/\\/10.0.0.1/ /x\n", "Line 2: ADD from a URL"),
        ('FROM localhost/x\nADD --chown=1 ["http\\u003a//10.0.0.1/", "/x"]\n', "Line 2: ADD from a URL"),
        ("ARG U=http://10.0.0.1/\nFROM localhost/x\nADD ${U} /x\n", "Line 3: write ADD's sources in full"),
        ("FROM localhost/x\nFETCH http://10.0.0.1/ /x\n", "Line 2: 'FETCH' is not an instruction"),
        ("FROM localhost/x\nONBUILD ADD http://10.0.0.1/ /x\n", "Line 2: ADD from a URL"),
        ("FROM localhost/x\nONBUILD COPY --from=127.0.0.1:22/x / /\n", "Line 2: Images from 127.0.0.1:22"),
        ("FROM localhost/x\nONBUILD FROM localhost/y\n", "Line 2: ONBUILD FROM is not allowed"),
        ('FROM localhost/x\nRUN --mount="type=bind,from=10.0.0.1:80/y,target=/m" true\n', "Line 2: Images from"),
        ("FROM localhost/x\nRUN --mount=type=bind,FROM=10.0.0.1:80/y,target=/m true\n", "Line 2: Images from"),
        # Flags with quotes or escapes in their names, which buildah reads without them.
        ('FROM localhost/x\nCOPY --fr"om"=10.0.0.1:80/y / /\n', "Line 2: Images from"),
        ("FROM localhost/x\nCOPY --f\\rom=10.0.0.1:80/y / /\n", "Line 2: Images from"),
        ("FROM localhost/x\nCOPY '--from=10.0.0.1:80/y' / /\n", "Line 2: Images from"),
        ('FROM localhost/x\nRUN --mo"unt"=type=bind,from=10.0.0.1:80/y,target=/m true\n', "Line 2: Images from"),
        ('FROM localhost/x\nONBUILD COPY --fr"om"=10.0.0.1:80/y / /\n', "Line 2: Images from"),
    ],
)
def test_what_is_refused_says_where_and_why(text, problem):
    with pytest.raises(ValidationError) as refused:
        check_containerfile(text)
    assert problem in " ".join(refused.value.messages)


def test_directives_that_change_nothing_are_accepted():
    # buildah fetches no frontend for `syntax`, and `escape=\\` is the default.
    assert check_containerfile("# syntax=docker/dockerfile:1\n# escape=\\\nFROM localhost/x\n") == []
    assert check_containerfile("FROM localhost/x\nONBUILD RUN make\nADD Containerfile /\n") == []


def test_continuation_lines_join_into_one_instruction_as_buildah_joins_them():
    # Continued lines keep their leading blanks; comments and blank lines among them are left out.
    assert logical_lines("FROM x\n\n# c\nRUN a \\\n  b \\  \n\n  # c\n  c\nENV A=1\n") == [
        (1, "FROM x"),
        (4, "RUN a   b   c"),
        (9, "ENV A=1"),
    ]
    # Joined without a space: what the pieces spell is what buildah reads.
    assert logical_lines("ADD http:/\\\n/example.org/f /f\n") == [(1, "ADD http://example.org/f /f")]
    # Lines end at a newline only; a carriage return before it is dropped, a byte-order mark too.
    assert logical_lines("\ufeffFROM x\r\nRUN a\x85b \\\r\n c\r\n") == [(1, "FROM x"), (2, "RUN a\x85b  c")]
    # A backslash followed by anything but blanks and tabs continues nothing.
    assert logical_lines("RUN a \\\xa0\nRUN b\n") == [(1, "RUN a \\"), (2, "RUN b")]


def test_podman_errors_are_said_for_a_person():
    error = (
        'Error: building at STEP "COPY results.txt /srv/www/": checking on sources under "/x": '
        'copier: stat: "/results.txt": no such file or directory'
    )
    assert plain_error(error).startswith('The build failed at STEP "COPY results.txt /srv/www/": checking on sources')
    assert plain_error('Error: building at STEP "RUN false": while running runtime: exit status 1') == (
        'The build failed at STEP "RUN false": exit status 1'
    )
