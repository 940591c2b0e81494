"""A build's log, as its owner reads it (page, CLI) while it runs."""

from __future__ import annotations

import re
import time

from rosetta.catalog.models import SoftwareBuild
from rosetta.core.paths import home

MAX_LOG = 1024 * 1024
FLUSH_EVERY = 0.3  # seconds between writes of new log lines: the page and the CLI poll them
LOOP_DEVICE = re.compile(r"/dev/loop\d+")  # which of this machine's loop devices holds the build's disk


class BuildLog:
    """The build's log in the database, written every FLUSH_EVERY seconds, at most MAX_LOG. It
    names no path of this machine's platform: the build's own places by what its container
    calls them (``hide``), anything else under ROSETTA_HOME by that name."""

    def __init__(self, build: SoftwareBuild) -> None:
        self.build_id = build.pk
        self.text = build.log
        self.written = len(self.text)
        self.last_flush = 0.0
        self.truncated = False
        self.hidden: list[tuple[str, str]] = []
        self.home = str(home())

    def hide(self, text: str, instead: str) -> None:
        self.hidden.append((text, instead))

    def redact(self, line: str) -> str:
        for text, instead in self.hidden:
            line = line.replace(text, instead)
        return LOOP_DEVICE.sub("/dev/loop", line.replace(self.home, "ROSETTA_HOME"))

    def add(self, line: str) -> None:
        line = self.redact(line).replace("\x00", "\ufffd")  # a database's text holds no NUL
        if self.truncated:
            return
        if len(self.text) + len(line) + 1 > MAX_LOG:
            self.text += "... (the rest of the log is left out: it is longer than 1 MiB)\n"
            self.truncated = True
            return
        self.text += line + "\n"

    def say(self, line: str) -> None:
        self.add(line)
        self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if len(self.text) == self.written or (not force and now - self.last_flush < FLUSH_EVERY):
            return
        SoftwareBuild.objects.filter(pk=self.build_id).update(log=self.text)
        self.written = len(self.text)
        self.last_flush = now
