"""The runner's logging: plain lines or JSON lines on stderr.

:mod:`async_nexus.runner` re-exports everything public here.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any

from ..errors import BadValue

__all__ = ["JsonFormatter", "configure_logging"]

# What every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``.

    A traceback goes in ``exception``; fields passed with ``extra=`` (the runner's ``stats``)
    are kept under their own names.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        return json.dumps(entry, default=str)


def configure_logging(*, level: str | int = "INFO", log_format: str = "plain") -> None:
    """Send all logging to stderr at ``level``, as plain lines or JSON lines (``"json"``).

    It replaces the root logger's handlers, so calling it twice does not double the output.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif log_format == "plain":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        raise BadValue(f"log_format must be 'plain' or 'json', not {log_format!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
