"""How the platform's processes write their logs: lines for people, or one JSON object per line
for a log collector (``ROSETTA_LOG_FORMAT=json``)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One object per record: time (UTC, ISO 8601), level, logger, message, the process, and the
    exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def json_wanted() -> bool:
    return os.environ.get("ROSETTA_LOG_FORMAT", "plain").strip().lower() == "json"


def formatter() -> logging.Formatter:
    return JsonFormatter() if json_wanted() else logging.Formatter(PLAIN)


def level() -> str:
    return os.environ.get("ROSETTA_LOG_LEVEL", "INFO")
